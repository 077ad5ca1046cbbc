#!/usr/bin/env python3
"""ternlm chat and run in a real pseudo-terminal, as a user types: libedit line editing (arrow keys, history,
UTF-8), multi-line input (trailing backslash, bracketed paste), Ctrl-C (stops a reply, clears a typed line, quits
at an empty prompt; a second Ctrl-C in a conversation does not kill it), Ctrl-D, and Ctrl-C in run (exit 130).

usage: chat_pty.py PATH/TO/ternlm SHARED_DIR"""
import os
import pty
import re
import select
import signal
import sys
import tempfile
import time

TERNLM, SHARED = sys.argv[1], sys.argv[2]
MODEL = os.path.join(SHARED, 'fixtures', 'b158-llama3-i2s.gguf')
passed = failed = 0

if b'line editing: libedit' not in __import__('subprocess').run([TERNLM, '--version'], capture_output=True).stdout:
    print('ternlm was built without libedit: skipping the terminal tests')
    sys.exit(77)


def check(cond, what, detail=''):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f'FAIL: {what}' + (f'\n  output: {detail[-600:]!r}' if detail else ''), file=sys.stderr)


class Term:
    """A program on the slave side of a pty; we are the terminal."""

    def __init__(self, args):
        home = tempfile.mkdtemp()
        env = dict(os.environ, LANG='C.UTF-8', LC_ALL='C.UTF-8', TERM='xterm', HOME=home)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(args[0], args, env)
        self.out = b''
        self.status = None

    def pump(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            r, _, _ = select.select([self.fd], [], [], max(0.0, min(0.05, end - time.time())))
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.out += data

    def expect(self, pattern, timeout=20, since=0):
        rx = re.compile(pattern)
        end = time.time() + timeout
        while time.time() < end:
            m = rx.search(self.out, since)
            if m:
                return m
            self.pump(0.05)
            if self.poll() is not None and not rx.search(self.out, since):
                self.pump(0.2)
                return rx.search(self.out, since)
        return None

    def send(self, data):
        os.write(self.fd, data)

    def poll(self):
        if self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = st
        return self.status

    def wait(self, timeout=20):
        end = time.time() + timeout
        while time.time() < end and self.poll() is None:
            self.pump(0.05)
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            return None
        st = self.status
        return os.WEXITSTATUS(st) if os.WIFEXITED(st) else -os.WTERMSIG(st)

    def text(self):
        return self.out.decode('utf-8', 'replace')


def prompt_count(t):
    return t.out.count(b'> ')


# 1. line editing, history, multi-line input, Ctrl-C on a typed line, /reset, Ctrl-D
t = Term([TERNLM, 'chat', '-m', MODEL, '-n', '2', '--temp', '0', '--verbose-prompt', '--color'])
check(t.expect(rb'> ') is not None, 'chat shows a prompt', t.text())
mark = len(t.out)
t.send(b'Helo\x1b[Dl\r')  # Left arrow, then insert the missing l
check(t.expect(rb'\[message: 5 bytes\] Hello\r?\n', since=mark) is not None, 'arrow key moves the cursor', t.text())
t.expect(rb'> ', since=mark + 1)
mark = len(t.out)
t.send(b'\x1b[A\r')  # Up: the last message again
check(t.expect(rb'\[message: 5 bytes\] Hello', since=mark) is not None, 'Up recalls history', t.text())
t.expect(rb'> ', since=mark + 20)
mark = len(t.out)
t.send('héllo wörld\r'.encode())
check(t.expect(rb'\[message: 13 bytes\] h\xc3\xa9llo w\xc3\xb6rld', since=mark) is not None, 'UTF-8 input', t.text())
mark = len(t.out)
t.send(b'one\\\r')
check(t.expect(rb'\.\.\. ', since=mark) is not None, 'a trailing backslash shows a continuation prompt', t.text())
t.send(b'two\r')
check(t.expect(rb'\[message: 7 bytes\] one\\ntwo', since=mark) is not None, 'backslash joins lines', t.text())
mark = len(t.out)
t.send(b'\x1b[200~pa1\rpa2\x1b[201~')
t.pump(0.3)
t.send(b'\r')
check(t.expect(rb'\[message: 7 bytes\] pa1\\npa2', since=mark) is not None, 'a bracketed paste keeps its newline', t.text())
mark = len(t.out)
time.sleep(0.2)
t.send(b'junk')
t.pump(0.3)
t.send(b'\x03')
check(t.expect(rb'\^C', since=mark) is not None, 'Ctrl-C on a typed line', t.text())
t.pump(0.3)
t.send(b'ok\r')
check(t.expect(rb'\[message: 2 bytes\] ok', since=mark) is not None, 'after Ctrl-C the next line is read', t.text())
check(b'] junk' not in t.out[mark:], 'Ctrl-C discards the typed line', t.text())
check(t.poll() is None, 'Ctrl-C on a typed line does not quit')
check(b'\x1b[32m' in t.out, '--color colours the input')
mark = len(t.out)
t.send(b'/reset\r')
check(t.expect(rb'\(conversation cleared\)', since=mark) is not None, '/reset', t.text())
t.expect(rb'> ', since=mark)
t.pump(0.2)
t.send(b'\x04')
check(t.wait() == 0, 'Ctrl-D at an empty prompt exits 0', t.text())

# 2. Ctrl-C stops a reply, twice, and the conversation goes on; Ctrl-C at an empty prompt quits
t = Term([TERNLM, 'chat', '-m', MODEL, '-n', '-1', '--ignore-eos', '--temp', '0', '--verbose'])
t.expect(rb'> ')
for turn in (1, 2):
    mark = len(t.out)
    t.send(b'Tell me everything\r')
    t.pump(0.8)
    t.send(b'\x03')
    check(t.expect(rb'\(reply stopped\)', since=mark) is not None, f'Ctrl-C {turn} stops the reply', t.text())
    check(t.expect(rb'> ', since=mark + 1) is not None, f'a prompt after Ctrl-C {turn}', t.text())
    check(t.poll() is None, f'Ctrl-C {turn} during a reply does not kill the chat', t.text())
check(len(re.findall(rb'\[turn:', t.out)) == 2, 'both stopped turns are reported', t.text())
t.pump(0.3)
t.send(b'\x03')
check(t.wait() == 0, 'Ctrl-C at an empty prompt exits 0', t.text())

# 3. Ctrl-C during run exits 130
t = Term([TERNLM, 'run', '-m', MODEL, '-p', 'Once upon a time', '-n', '-1', '--ignore-eos'])
t.pump(1.0)
t.send(b'\x03')
rc = t.wait()
check(rc == 130, f'Ctrl-C during run exits 130 (got {rc})', t.text())
check('interrupted' in t.text(), 'run says it was interrupted', t.text())

print(f'{passed} passed, {failed} failed')
sys.exit(1 if failed else 0)
