/* The HTTP side of ternlm-server: routes, request validation and responses (libmicrohttpd + cJSON). */
#ifndef TERNLM_SERVER_HTTP_H
#define TERNLM_SERVER_HTTP_H

#include "server.h"

typedef struct srv_http srv_http;

/* Listen on cfg->host:cfg->port (port 0 picks a free one, see http_port). Every route but /health answers
 * 503 "loading" until http_set_ready. */
srv_http *http_start(const srv_config *cfg, char *err, size_t err_cap);
int http_port(const srv_http *h);
void http_set_ready(srv_http *h, ternlm_model *model, srv_engine *engine, const char *model_id);
/* SIGTERM: stop accepting connections and new generations; requests in flight go on. */
void http_quiesce(srv_http *h);
int http_inflight(srv_http *h); /* generation requests whose response has not finished */
void http_stop(srv_http *h);

#endif
