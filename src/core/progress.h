/* progress.h — done/total, rate and ETA for long work, from rank 0 only.
 *
 * Lines are printed every `interval_s` seconds and at each further tenth of the
 * work (never two within a second), and once at the end; rank 0 only. Mode: auto
 * and always print whether stderr is a terminal or not (mpirun, sbatch logs);
 * never prints nothing.
 */
#ifndef TP_PROGRESS_H
#define TP_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { TP_PROGRESS_AUTO = 0, TP_PROGRESS_ALWAYS, TP_PROGRESS_NEVER } tp_progress_mode;

typedef struct {
    char label[64];
    char unit[16];
    uint64_t total, done;
    double t_start, t_last, interval_s;
    bool enabled;
    int tenth_printed;       /* the last tenth of the work a line reported */
    char note[192];          /* appended to each line (tp_progress_note) */
} tp_progress;

void tp_progress_set_default(tp_progress_mode mode, double interval_s);
void tp_progress_begin(tp_progress *p, const char *label, const char *unit, uint64_t total);
void tp_progress_add(tp_progress *p, uint64_t n);   /* may print a line */
void tp_progress_end(tp_progress *p);               /* prints the final line */
/* Text appended to the following lines (e.g. "loss 0.12, FVU 0.08"). */
void tp_progress_note(tp_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double tp_now(void);                                /* monotonic seconds */

#endif
