#!/usr/bin/env python3
"""Writes a copy of a GGUF v3 file with one more metadata string, general.description, holding terminal escape
sequences (OSC title, SGR colour, C1 CSI, a bidi override, an invalid byte). The string is padded so the header
grows by a multiple of the alignment and the tensor data keeps its offsets.

usage: hostile_gguf.py IN.gguf OUT.gguf"""
import struct
import sys

src, dst = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
assert data[:4] == b'GGUF' and struct.unpack_from('<I', data, 4)[0] == 3, 'GGUF v3 expected'
n_kv = struct.unpack_from('<Q', data, 16)[0]
key = b'general.description'
value = b'\x1b]0;pwned\x07\x1b[31mred\x1b[0m \xc2\x9b2J \xe2\x80\xaeevil \xff end'
fixed = 8 + len(key) + 4 + 8
pad = (-(fixed + len(value))) % 32
value += b' ' * pad
kv = struct.pack('<Q', len(key)) + key + struct.pack('<I', 8) + struct.pack('<Q', len(value)) + value
out = data[:16] + struct.pack('<Q', n_kv + 1) + kv + data[24:]
open(dst, 'wb').write(out)
