/* log.h — one line per event, rank-aware.
 *
 * tp_log_info/tp_log_warn print only on rank 0 (the rank set by tp_log_set_rank);
 * tp_log_rank prints on any rank with a "[rank N]" prefix. Errors go to stderr as
 * "transpolmo: error: ..." (single rank) or "[rank N] error: ..." (several).
 */
#ifndef TP_LOG_H
#define TP_LOG_H

#include <stdbool.h>

void tp_log_set_rank(int rank, int size);
int tp_log_rank_id(void);
int tp_log_world_size(void);
void tp_log_set_quiet(bool quiet);   /* suppress info lines (tests) */

void tp_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tp_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tp_log_rank(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tp_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
