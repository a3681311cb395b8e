/* clock.c: CLOCK_MONOTONIC for deadlines, CLOCK_REALTIME for gettime(). */
#include <time.h>

#include "clock.h"


static double read_clock(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}


double cps_clock_now(void) {
    return read_clock(CLOCK_MONOTONIC);
}


double cps_clock_wall(void) {
    return read_clock(CLOCK_REALTIME);
}
