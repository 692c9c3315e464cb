/* w4_echo.c - the W4 floor: the TCP echo workload in plain C on libuv, in one process.
**
**   cc -O2 -o w4_echo w4_echo.c -luv && ./w4_echo C [R]
**
** A server echoes every chunk it reads (callbacks, uv_try_write then
** uv_write for the rest); C clients connect to 127.0.0.1 and each does R
** round trips of a 64-byte message (write, read until 64 bytes, memcmp).
** TCP_NODELAY everywhere.  Prints "RESULT w4 floor-c n=C value=RT/S
** unit=rt_per_s"; exits 1 with "FAIL: ..." when the work check fails.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MSG 64

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t creq;
  char msg[MSG];
  char got[MSG];
  size_t have;
  long rounds;
} client_t;

typedef struct {
  uv_tcp_t tcp;
  char buf[65536];
} conn_t;

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
  char data[];
} wreq_t;

static uv_loop_t *loop;
static uv_tcp_t server;
static long R, ok_rt, live;

static void fail(const char *msg) {
  fprintf(stderr, "FAIL: %s\n", msg);
  exit(1);
}

static void on_closed(uv_handle_t *h) { free(h); }

static void on_written(uv_write_t *req, int status) {
  if (status < 0 && status != UV_ECANCELED) fail(uv_strerror(status));
  free(req);
}

/* write all of buf: try now, queue what the kernel did not take */
static void write_all(uv_stream_t *s, const char *p, size_t n) {
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  int r = uv_try_write(s, &b, 1);
  wreq_t *w;
  if (r == (int)n) return;
  if (r < 0 && r != UV_EAGAIN) fail(uv_strerror(r));
  if (r < 0) r = 0;
  w = malloc(sizeof *w + n - (size_t)r);
  memcpy(w->data, p + r, n - (size_t)r);
  w->buf = uv_buf_init(w->data, (unsigned)(n - (size_t)r));
  uv_write(&w->req, s, &w->buf, 1, on_written);
}

/* ---- the server ---- */

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)hint;
  *b = uv_buf_init(((conn_t *)h)->buf, sizeof ((conn_t *)h)->buf);
}

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  if (n > 0) write_all(s, b->base, (size_t)n);
  else if (n < 0) uv_close((uv_handle_t *)s, on_closed);
}

static void on_connection(uv_stream_t *srv, int status) {
  conn_t *c;
  if (status < 0) fail(uv_strerror(status));
  c = malloc(sizeof *c);
  uv_tcp_init(loop, &c->tcp);
  if (uv_accept(srv, (uv_stream_t *)&c->tcp)) fail("accept");
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_read);
}

/* ---- the clients ---- */

static void client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  client_t *c = (client_t *)h;
  (void)hint;
  *b = uv_buf_init(c->got + c->have, (unsigned)(MSG - c->have));
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  client_t *c = (client_t *)s;
  (void)b;
  if (n < 0) fail("client: EOF or error before the echo");
  c->have += (size_t)n;
  if (c->have < MSG) return;
  if (memcmp(c->got, c->msg, MSG) != 0) fail("echo mismatch");
  ok_rt++;
  c->have = 0;
  if (++c->rounds < R) {
    write_all(s, c->msg, MSG);
    return;
  }
  uv_close((uv_handle_t *)s, on_closed);
  if (--live == 0) uv_close((uv_handle_t *)&server, NULL);
}

static void on_connect(uv_connect_t *req, int status) {
  client_t *c = req->data;
  if (status < 0) fail(uv_strerror(status));
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read);
  write_all((uv_stream_t *)&c->tcp, c->msg, MSG);
}

int main(int argc, char **argv) {
  long nc = argc > 1 ? atol(argv[1]) : 100, i;
  struct sockaddr_in addr;
  int len = sizeof addr;
  uint64_t t0, t1;
  R = argc > 2 ? atol(argv[2]) : 1000;
  if (nc < 1 || R < 1) fail("bad arguments");
  loop = uv_default_loop();
  uv_tcp_init(loop, &server);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  if (uv_tcp_bind(&server, (struct sockaddr *)&addr, 0)) fail("bind");
  if (uv_listen((uv_stream_t *)&server, 4096, on_connection)) fail("listen");
  uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &len);
  live = nc;
  t0 = uv_hrtime();
  for (i = 0; i < nc; i++) {
    client_t *c = calloc(1, sizeof *c);
    char head[32];
    int hl = snprintf(head, sizeof head, "client %06ld ", i);
    memset(c->msg, 'x', MSG);
    memcpy(c->msg, head, (size_t)hl);
    c->creq.data = c;
    uv_tcp_init(loop, &c->tcp);
    uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&addr, on_connect);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  t1 = uv_hrtime();
  if (ok_rt != nc * R) fail("round trips missing");
  printf("RESULT w4 floor-c n=%ld value=%.6g unit=rt_per_s\n", nc,
         (double)ok_rt / ((double)(t1 - t0) / 1e9));
  return 0;
}
