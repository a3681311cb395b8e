/*
 * c_echo: plain C epoll line-echo server, the reference for "how fast can
 * this machine echo lines on one core".
 *
 *   c_echo [port [lifetime_s]]
 *
 * Listens on 127.0.0.1:port (0 or absent: a free port) and prints
 * "port=<n>" on stdout once listening. Every complete line received on a
 * connection is written back; a partial line waits for its end. The server
 * exits by itself after lifetime_s seconds (default 60, at most 3600) and
 * prints "accepted=<n> lines=<n> cpu_s=<s>".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ 16384

struct conn {
  int fd;
  size_t in;            /* bytes buffered, not yet echoed */
  size_t out_off;       /* bytes of out[] already written */
  size_t out_len;       /* bytes pending in out[] */
  char *buf;
  char *out;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void drop(int ep, struct conn *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->buf);
  free(c->out);
  free(c);
}

/* tries to write what is pending; returns -1 on error */
static int flush_out(int ep, struct conn *c) {
  struct epoll_event ev;
  while (c->out_off < c->out_len) {
    ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                     MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EAGAIN) {
        ev.events = EPOLLIN | EPOLLOUT;
        ev.data.ptr = c;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        return 0;
      }
      return -1;
    }
    c->out_off += k;
  }
  if (c->out_len) {
    c->out_off = c->out_len = 0;
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  }
  return 0;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  double life = argc > 2 ? atof(argv[2]) : 60, deadline;
  int lfd, ep, one = 1;
  struct sockaddr_in a;
  socklen_t al = sizeof a;
  struct epoll_event ev, evs[512];
  struct rlimit rl;
  struct rusage ru;
  unsigned long accepted = 0, lines = 0;

  if (!(life > 0 && life <= 3600) || port < 0 || port > 65535) {
    fprintf(stderr, "usage: c_echo [port [lifetime_s]]\n");
    return 2;
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4096)) {
    perror("c_echo: bind/listen");
    return 1;
  }
  getsockname(lfd, (struct sockaddr *)&a, &al);
  printf("port=%d\n", ntohs(a.sin_port));
  fflush(stdout);

  ep = epoll_create1(0);
  ev.events = EPOLLIN;
  ev.data.ptr = NULL;                 /* NULL marks the listener */
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  deadline = now() + life;

  while (now() < deadline) {
    int n = epoll_wait(ep, evs, 512, (int)((deadline - now()) * 1000) + 1), i;
    for (i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (!c) {
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          c = calloc(1, sizeof *c);
          c->fd = fd;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          ev.events = EPOLLIN;
          ev.data.ptr = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
          accepted++;
        }
        continue;
      }
      if (evs[i].events & EPOLLOUT) {
        if (flush_out(ep, c) < 0) { drop(ep, c); continue; }
        if (c->out_len) continue;
      }
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t k;
        char *nl;
        size_t upto;
        if (c->out_len) continue;           /* still writing: back-pressure */
        if (!c->buf && !(c->buf = malloc(BUFSZ))) { drop(ep, c); continue; }
        k = recv(c->fd, c->buf + c->in, BUFSZ - c->in, 0);
        if (k == 0 || (k < 0 && errno != EAGAIN)) { drop(ep, c); continue; }
        if (k < 0) continue;
        c->in += k;
        nl = memrchr(c->buf, '\n', c->in);
        if (!nl) {
          if (c->in == BUFSZ) { drop(ep, c); }   /* line too long */
          continue;
        }
        upto = (size_t)(nl - c->buf) + 1;
        for (char *p = c->buf; (p = memchr(p, '\n', upto - (p - c->buf))); p++)
          lines++;
        k = send(c->fd, c->buf, upto, MSG_NOSIGNAL);
        if (k < 0 && errno != EAGAIN) { drop(ep, c); continue; }
        if (k < 0) k = 0;
        if ((size_t)k < upto) {             /* keep the unsent rest */
          if (!c->out && !(c->out = malloc(BUFSZ))) { drop(ep, c); continue; }
          memcpy(c->out, c->buf + k, upto - k);
          c->out_len = upto - k;
          c->out_off = 0;
        }
        memmove(c->buf, c->buf + upto, c->in - upto);
        c->in -= upto;
        if (c->out_len && flush_out(ep, c) < 0) { drop(ep, c); continue; }
      }
    }
  }
  getrusage(RUSAGE_SELF, &ru);
  printf("accepted=%lu lines=%lu cpu_s=%.3f\n", accepted, lines,
         ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
  return 0;
}
