/* report_cmd.c — `transpolmo report [--html PATH]` (report_cmd.h). */
#include "cmd/report_cmd.h"

#include "core/fsutil.h"
#include "dist/world.h"
#include "report/report_html.h"
#include "run_layout.h"

tp_status report_cmd_run(tp_cli *cli)
{
    const char *html = cli_take_value(cli, "--html");
    TP_CHECK(cli_reject_rest(cli));
    tp_status st = TP_OK;
    if (dist_rank() == 0) {
        if (!fs_exists(cli->run_dir))
            st = tp_err(TP_ERR_IO, "report: no run directory %s (give it with --out)", cli->run_dir);
        else st = report_html_write(cli->run_dir, html);
    }
    return dist_agree(MPI_COMM_WORLD, st, "report");
}
