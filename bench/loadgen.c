/*
 * loadgen: closed-loop TCP load generator for the line-echo workloads.
 *
 *   loadgen host port conns duration_s [msg_bytes]
 *
 * Opens `conns` connections to host:port (loopback only: 127.0.0.0/8 or
 * ::1), warms up with one round trip on every connection (so the server has
 * accepted and served all of them; at most 30 s, not measured), then for
 * `duration_s` seconds keeps exactly one request in flight on
 * each: it sends `msg_bytes` bytes (default 64, the last one '\n') and waits
 * until the same number of bytes came back before sending again. The
 * round-trip time of every request is recorded in a log-linear histogram
 * (0.1 % resolution).
 *
 * msg_bytes 0 is the idle mode: connect, warm up with one 2-byte line per
 * connection, wait 0.2 s for the server to settle, then hold the connections
 * without sending anything for duration_s seconds.
 *
 * If LOADGEN_WATCH_PID names a process, its CPU time (utime+stime from
 * /proc/<pid>/stat), resident memory (VmRSS) and context switches (summed
 * over its threads) are read just before connecting, when all connections
 * are up, and at the end of the measured window; the figures printed cover
 * the measured window only (memory: growth from before connecting).
 *
 * Output: one line of key=value pairs on stdout (round-trip percentiles
 * p50_ms, p90_ms, p99_ms, p999_ms = 99.9th; "starved" counts connections
 * that completed no round trip). Exit status 0 when every connection was
 * established, none failed and none starved; 1 otherwise; 2 on bad usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#define MAX_CONNS 100000
#define MAX_DURATION 600.0
#define MAX_MSG 65536
#define CONNECT_WINDOW 256      /* connects in progress at once */
#define CONNECT_TIMEOUT 30.0    /* seconds for the whole connect phase */

/* histogram: values below 1024 us exactly, above that 512 sub-buckets per
   power of two */
#define SUB 512
#define HBUCKETS (1024 + 40 * SUB)

enum { C_NEW, C_CONNECTING, C_UP, C_DEAD };

struct conn {
  int fd;
  int state;
  size_t sent;      /* bytes of the current request written */
  size_t got;       /* bytes of the current reply read */
  double t0;        /* when the current request started */
  unsigned long rts; /* round trips completed */
};

static uint64_t hist[HBUCKETS];
static uint64_t max_us;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int hidx(uint64_t v) {
  int e;
  if (v < 1024) return (int)v;
  e = 63 - __builtin_clzll(v);                 /* >= 10 */
  if (e - 10 >= 40) return HBUCKETS - 1;
  return 1024 + (e - 10) * SUB + (int)((v >> (e - 9)) - SUB);
}

static uint64_t hval(int i) {                  /* lower bound of bucket i */
  int e;
  if (i < 1024) return (uint64_t)i;
  e = (i - 1024) / SUB + 10;
  return (uint64_t)((i - 1024) % SUB + SUB) << (e - 9);
}

static void record(double secs) {
  uint64_t us = (uint64_t)(secs * 1e6 + 0.5);
  hist[hidx(us)]++;
  if (us > max_us) max_us = us;
}

static double pct(uint64_t total, double p) {
  uint64_t want = (uint64_t)(total * p + 0.999999), acc = 0;
  int i;
  if (total == 0) return 0;
  if (want < 1) want = 1;
  for (i = 0; i < HBUCKETS; i++) {
    acc += hist[i];
    if (acc >= want) return hval(i) / 1000.0;
  }
  return max_us / 1000.0;
}

/* process figures read from /proc */
struct pstat { double cpu; long rss_kb; long ctx; int ok; };

static void read_pstat(int pid, struct pstat *ps) {
  char path[64], buf[4096], *p;
  FILE *f;
  unsigned long ut = 0, st = 0;
  DIR *d;
  struct dirent *de;
  memset(ps, 0, sizeof *ps);
  if (pid <= 0) return;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if (!(f = fopen(path, "r"))) return;
  if (!fgets(buf, sizeof buf, f)) { fclose(f); return; }
  fclose(f);
  p = strrchr(buf, ')');                       /* skip "pid (comm)" */
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                   &ut, &st) != 2) return;
  ps->cpu = (double)(ut + st) / sysconf(_SC_CLK_TCK);
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  if ((f = fopen(path, "r"))) {
    while (fgets(buf, sizeof buf, f))
      if (!strncmp(buf, "VmRSS:", 6)) ps->rss_kb = atol(buf + 6);
    fclose(f);
  }
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  if ((d = opendir(path))) {
    while ((de = readdir(d))) {
      char tp[300];
      if (de->d_name[0] == '.') continue;
      snprintf(tp, sizeof tp, "/proc/%d/task/%s/status", pid, de->d_name);
      if (!(f = fopen(tp, "r"))) continue;
      while (fgets(buf, sizeof buf, f))
        if (!strncmp(buf, "voluntary_ctxt_switches:", 24) ||
            !strncmp(buf, "nonvoluntary_ctxt_switches:", 27))
          ps->ctx += atol(strchr(buf, ':') + 1);
      fclose(f);
    }
    closedir(d);
  }
  ps->ok = 1;
}

static int loopback_addr(const char *host, struct sockaddr_storage *ss,
                         socklen_t *len, int port) {
  struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
  memset(ss, 0, sizeof *ss);
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127) return -1;
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    *len = sizeof *a4;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr)) return -1;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    *len = sizeof *a6;
    return 0;
  }
  return -1;
}

static void usage(void) {
  fprintf(stderr, "usage: loadgen host port conns duration_s [msg_bytes]\n"
          "  host: 127.0.0.0/8 or ::1 only; conns 1..%d; duration 0<d<=%g s;\n"
          "  msg_bytes 1..%d (default 64), 0 = hold idle connections\n",
          MAX_CONNS, MAX_DURATION, MAX_MSG);
  exit(2);
}

static int failed, warm_left;
static uint64_t total;

/* starts a request on c */
static void send_req(int ep, struct conn *c, uint32_t id, const char *req, int msg) {
  struct epoll_event ev;
  ssize_t k;
  c->t0 = now();
  c->got = 0;
  k = send(c->fd, req, msg, MSG_NOSIGNAL);
  if (k < 0 && errno != EAGAIN) { c->state = C_DEAD; failed++; return; }
  c->sent = k > 0 ? (size_t)k : 0;
  if (c->sent < (size_t)msg) {
    ev.events = EPOLLIN | EPOLLOUT; ev.data.u32 = id;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  }
}

/* Runs requests until `until`. measure 0: warm-up, one round trip per
   connection, ends early when all are done (warm_left reaches 0); measure 1:
   closed loop, every reply recorded and followed by the next request. With
   msg 0 it only watches for connections closed by the server. */
static void phase(int ep, struct conn *cs, int nconns, const char *req, int msg,
                  char *rbuf, int measure, double until) {
  struct epoll_event ev, evs[1024];
  double t;
  int i, failed0 = failed;
  if (msg)
    for (i = 0; i < nconns; i++)
      if (cs[i].state == C_UP) send_req(ep, &cs[i], (uint32_t)i, req, msg);
  while ((t = now()) < until && (measure || warm_left - (failed - failed0) > 0)) {
    int ms = (int)((until - t) * 1000) + 1, n;
    n = epoll_wait(ep, evs, 1024, ms > 100 ? 100 : ms);
    for (i = 0; i < n; i++) {
      uint32_t id = evs[i].data.u32;
      struct conn *c = &cs[id];
      ssize_t k;
      if (c->state != C_UP) continue;
      if (evs[i].events & EPOLLOUT && c->sent < (size_t)msg) {
        k = send(c->fd, req + c->sent, msg - c->sent, MSG_NOSIGNAL);
        if (k > 0) c->sent += k;
        else if (k < 0 && errno != EAGAIN) { c->state = C_DEAD; failed++; continue; }
        if (c->sent == (size_t)msg) {
          ev.events = EPOLLIN; ev.data.u32 = id;
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
      }
      if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      k = recv(c->fd, rbuf, MAX_MSG, 0);
      if (k == 0 || (k < 0 && errno != EAGAIN)) {
        c->state = C_DEAD; failed++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        continue;
      }
      if (k < 0 || !msg) continue;             /* idle: data is ignored */
      c->got += k;
      if (c->got < (size_t)msg || c->sent < (size_t)msg) continue;
      if (!measure) { c->sent = 0; warm_left--; continue; }
      t = now();
      record(t - c->t0);
      total++;
      c->rts++;
      if (t < until) send_req(ep, c, id, req, msg);
    }
  }
}

int main(int argc, char **argv) {
  struct sockaddr_storage addr;
  socklen_t alen;
  int port, nconns, msg, ep, i, up = 0, pending = 0, next = 0;
  int watch = 0, idle, starved = 0;
  double dur, tstart, tend, tconn0, t, twarm;
  char *req, *rbuf;
  struct conn *cs;
  struct epoll_event ev, evs[1024];
  struct rlimit rl;
  struct pstat p0, p1, p2;
  const char *w = getenv("LOADGEN_WATCH_PID");

  if (argc < 5 || argc > 6) usage();
  port = atoi(argv[2]);
  nconns = atoi(argv[3]);
  dur = atof(argv[4]);
  msg = argc > 5 ? atoi(argv[5]) : 64;
  if (port <= 0 || port > 65535 || nconns < 1 || nconns > MAX_CONNS ||
      !(dur > 0 && dur <= MAX_DURATION) || msg < 0 || msg > MAX_MSG) usage();
  if (loopback_addr(argv[1], &addr, &alen, port) != 0) {
    fprintf(stderr, "loadgen: refusing %s: only 127.0.0.0/8 and ::1\n", argv[1]);
    return 2;
  }
  idle = msg == 0;
  if (w) watch = atoi(w);

  /* fd budget: raise the soft limit to the hard one */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  req = malloc(msg + 1);
  rbuf = malloc(MAX_MSG);
  cs = calloc(nconns, sizeof *cs);
  if (!req || !rbuf || !cs) { perror("malloc"); return 1; }
  for (i = 0; i < msg; i++) req[i] = 'a' + i % 26;
  if (msg) req[msg - 1] = '\n';
  ep = epoll_create1(0);
  if (ep < 0) { perror("epoll_create1"); return 1; }

  read_pstat(watch, &p0);

  /* connect phase: at most CONNECT_WINDOW in progress */
  tconn0 = now();
  while (up + failed < nconns) {
    int n;
    if (now() - tconn0 > CONNECT_TIMEOUT) break;
    while (next < nconns && pending < CONNECT_WINDOW) {
      struct conn *c = &cs[next];
      int one = 1, fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
      c->fd = fd;
      if (fd < 0) { c->state = C_DEAD; failed++; next++; continue; }
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (connect(fd, (struct sockaddr *)&addr, alen) == 0) {
        c->state = C_UP; up++;
      } else if (errno == EINPROGRESS) {
        c->state = C_CONNECTING; pending++;
      } else {
        close(fd); c->fd = -1; c->state = C_DEAD; failed++; next++; continue;
      }
      ev.events = EPOLLOUT;
      ev.data.u32 = (uint32_t)next;
      epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
      next++;
    }
    n = epoll_wait(ep, evs, 1024, 100);
    for (i = 0; i < n; i++) {
      struct conn *c = &cs[evs[i].data.u32];
      int err = 0;
      socklen_t el = sizeof err;
      if (c->state != C_CONNECTING) continue;
      pending--;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
      if (err) { close(c->fd); c->fd = -1; c->state = C_DEAD; failed++; }
      else { c->state = C_UP; up++; }
    }
  }

  /* warm-up: one round trip on every connection, so that the server has
     accepted and served all of them before the measured window starts */
  for (i = 0; i < nconns; i++) {
    struct conn *c = &cs[i];
    if (c->state != C_UP) continue;
    ev.events = EPOLLIN;                         /* also reports peer close */
    ev.data.u32 = (uint32_t)i;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  }
  t = now();
  warm_left = up;
  if (idle) phase(ep, cs, nconns, "i\n", 2, rbuf, 0, t + CONNECT_TIMEOUT);
  else phase(ep, cs, nconns, req, msg, rbuf, 0, t + CONNECT_TIMEOUT);
  twarm = now() - t;
  if (idle) {                  /* let the server finish that round and park */
    struct timespec ts = { 0, 200000000 };
    nanosleep(&ts, NULL);
  }

  /* measured window */
  read_pstat(watch, &p1);
  tstart = now();
  tend = tstart + dur;
  phase(ep, cs, nconns, req, msg, rbuf, 1, tend);
  t = now() - tstart;
  read_pstat(watch, &p2);
  for (i = 0; i < nconns; i++)
    if (!idle && cs[i].rts == 0) starved++;

  printf("conns=%d connected=%d failed=%d duration_s=%.3f connect_s=%.3f warmup_s=%.3f",
         nconns, up, failed, t, tstart - tconn0 - twarm, twarm);
  if (!idle)
    printf(" msg_bytes=%d round_trips=%llu rt_per_s=%.0f p50_ms=%.3f p90_ms=%.3f"
           " p99_ms=%.3f p999_ms=%.3f max_ms=%.3f starved=%d", msg,
           (unsigned long long)total, total / t, pct(total, 0.50), pct(total, 0.90),
           pct(total, 0.99), pct(total, 0.999), max_us / 1000.0, starved);
  if (p0.ok && p2.ok) {
    double cpu = p2.cpu - p1.cpu;
    printf(" server_cpu_s=%.3f server_ctxsw=%ld server_rss_kb=%ld"
           " server_rss_growth_kb=%ld", cpu, p2.ctx - p1.ctx, p2.rss_kb,
           p2.rss_kb - p0.rss_kb);
    if (!idle && total)
      printf(" server_cpu_us_per_rt=%.3f", cpu * 1e6 / total);
    if (up)
      printf(" server_rss_per_conn_b=%.0f", (p2.rss_kb - p0.rss_kb) * 1024.0 / up);
  }
  printf("\n");
  fflush(stdout);
  for (i = 0; i < nconns; i++)
    if (cs[i].fd > 0 && cs[i].state != C_DEAD) close(cs[i].fd);
  return (up == nconns && failed == 0 && starved == 0) ? 0 : 1;
}
