/* clock.h: the monotonic clock every deadline in the core is measured on. */
#ifndef CPS_CLOCK_H
#define CPS_CLOCK_H

/* seconds on CLOCK_MONOTONIC: immune to wall-clock jumps */
double cps_clock_now(void);

/* seconds since the epoch, for copas.gettime() */
double cps_clock_wall(void);

#endif
