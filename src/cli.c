#include "cli.h"

#include "core/text.h"
#include "run_layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TP_DEFAULT_CONFIG "configs/default.yaml"

/* Named options and the config key each sets. A NULL key marks the special ones. */
typedef struct {
    const char *opt;
    const char *key;      /* NULL: handled by name */
    bool flag;            /* takes no value; sets the key to "true" */
} named_opt;

static const named_opt named[] = {
    {"--config", NULL, false},
    {"--set", NULL, false},
    {"--model", "model.path", false},
    {"--num-samples", "data.num_samples", false},
    {"--device", "device", false},
    {"--skip-sae", "sae.skip", true},
    {"--layers", "layers", false},
    {"--out", "run.out_dir", false},
    {"--verbose", "log.verbose", true},
};

static const named_opt *find_named(const char *arg, const char **inline_val)
{
    *inline_val = NULL;
    for (size_t i = 0; i < sizeof named / sizeof *named; i++) {
        size_t n = strlen(named[i].opt);
        if (strncmp(arg, named[i].opt, n) != 0) continue;
        if (arg[n] == '\0') return &named[i];
        if (arg[n] == '=') { *inline_val = arg + n + 1; return &named[i]; }
    }
    return NULL;
}

static tp_status cli_apply_options(int argc, char **argv, tp_cli *out);

/* `run` and `submit` take the config file as their first argument, and use the
 * bundled default when there is none. */
/* Commands whose first argument may be the config file (`run X.yaml`, `submit X.yaml`,
 * `plan X.yaml`); without one they use the bundled default from the repository. */
static bool takes_config_arg(const char *command)
{
    return !strcmp(command, "run") || !strcmp(command, "submit") || !strcmp(command, "plan");
}

static bool is_yaml(const char *s)
{
    size_t n = strlen(s);
    return (n > 5 && !strcmp(s + n - 5, ".yaml")) || (n > 4 && !strcmp(s + n - 4, ".yml"));
}

static bool config_positional(const char *command, int i, const char *arg)
{
    return i == 2 && takes_config_arg(command) && is_yaml(arg);
}

tp_status cli_parse(int argc, char **argv, tp_cli *out)
{
    memset(out, 0, sizeof *out);
    if (argc < 2) return tp_err(TP_ERR_CONFIG, "no command given (try 'transpolmo help')");
    out->command = argv[1];
    TP_CHECK(tp_config_new(&out->cfg));

    /* Pass 1: the config file, so that every other option overrides it. */
    const char *config_path = NULL;
    for (int i = 2; i < argc; i++) {
        const char *v;
        const named_opt *o = find_named(argv[i], &v);
        if (o && !strcmp(o->opt, "--config")) {
            if (!v) {
                if (i + 1 >= argc) return tp_err(TP_ERR_CONFIG, "--config needs a file");
                v = argv[++i];
            }
            config_path = v;
        } else if (o && !o->flag && !v) {
            i++;   /* skip the value */
        } else if (!o && config_positional(out->command, i, argv[i])) {
            config_path = argv[i];
        }
    }
    /* `run` without a config file uses the bundled default, when run from the repo. */
    if (!config_path && takes_config_arg(out->command) && access(TP_DEFAULT_CONFIG, R_OK) == 0)
        config_path = TP_DEFAULT_CONFIG;
    if (config_path) {
        /* A config file that cannot be read is a configuration error (exit 2), like
         * one that does not parse. */
        tp_status st = tp_config_load_file(out->cfg, config_path);
        if (st != TP_OK) return st == TP_ERR_IO ? TP_ERR_CONFIG : st;
    }
    TP_CHECK(cli_apply_options(argc, argv, out));
    TP_CHECK(settings_read(out->cfg, &out->set));
    return run_dir_of(out->run_dir, sizeof out->run_dir, out->set.out_dir, out->set.run_name);
}

/* Pass 2: named options and --set, in order; the rest is the command's. */
static tp_status cli_apply_options(int argc, char **argv, tp_cli *out)
{
    for (int i = 2; i < argc; i++) {
        const char *v;
        const named_opt *o = find_named(argv[i], &v);
        if (!o) {
            if (config_positional(out->command, i, argv[i])) continue;
            if (out->nrest == CLI_MAX_REST) return tp_err(TP_ERR_CONFIG, "too many arguments");
            out->rest[out->nrest++] = argv[i];
            continue;
        }
        if (o->flag) {
            if (v) return tp_err(TP_ERR_CONFIG, "%s takes no value", o->opt);
            TP_CHECK(tp_config_set(out->cfg, o->key, "true", o->opt));
            continue;
        }
        if (!v) {
            if (i + 1 >= argc) return tp_err(TP_ERR_CONFIG, "%s needs a value", o->opt);
            v = argv[++i];
        }
        if (!strcmp(o->opt, "--config")) continue;
        if (!strcmp(o->opt, "--set")) TP_CHECK(tp_config_set_kv(out->cfg, v));
        else TP_CHECK(tp_config_set(out->cfg, o->key, v, o->opt));
    }
    return TP_OK;
}

void cli_free(tp_cli *cli)
{
    tp_config_free(cli->cfg);
    cli->cfg = NULL;
}

static void note_asked(tp_cli *cli, const char *name)
{
    if (cli->nasked < CLI_MAX_REST) cli->asked[cli->nasked++] = name;
}

const char *cli_take_value(tp_cli *cli, const char *name)
{
    note_asked(cli, name);
    size_t n = strlen(name);
    for (int i = 0; i < cli->nrest; i++) {
        if (cli->rest_used[i] || strncmp(cli->rest[i], name, n) != 0) continue;
        if (cli->rest[i][n] == '=') {
            cli->rest_used[i] = true;
            return cli->rest[i] + n + 1;
        }
        if (cli->rest[i][n] == '\0' && i + 1 < cli->nrest) {
            cli->rest_used[i] = cli->rest_used[i + 1] = true;
            return cli->rest[i + 1];
        }
    }
    return NULL;
}

bool cli_take_flag(tp_cli *cli, const char *name)
{
    note_asked(cli, name);
    for (int i = 0; i < cli->nrest; i++) {
        if (!cli->rest_used[i] && !strcmp(cli->rest[i], name)) {
            cli->rest_used[i] = true;
            return true;
        }
    }
    return false;
}

const char *cli_take_positional(tp_cli *cli)
{
    for (int i = 0; i < cli->nrest; i++) {
        if (!cli->rest_used[i] && cli->rest[i][0] != '-') {
            cli->rest_used[i] = true;
            return cli->rest[i];
        }
    }
    return NULL;
}

const char *cli_take_subcommand(tp_cli *cli)
{
    if (cli->nrest == 0 || cli->rest_used[0] || cli->rest[0][0] == '-') return NULL;
    cli->rest_used[0] = true;
    return cli->subcommand = cli->rest[0];
}

tp_status cli_reject_rest(const tp_cli *cli)
{
    for (int i = 0; i < cli->nrest; i++) {
        if (cli->rest_used[i]) continue;
        const char *known[2 * CLI_MAX_REST];
        size_t n = 0;
        for (int k = 0; k < cli->nasked; k++) known[n++] = cli->asked[k];
        for (size_t k = 0; k < sizeof named / sizeof *named && n < 2 * CLI_MAX_REST; k++) known[n++] = named[k].opt;
        char word[128];
        snprintf(word, sizeof word, "%s", cli->rest[i]);
        word[strcspn(word, "=")] = '\0';   /* "--layer=3" is about "--layer" */
        const char *near = word[0] == '-' ? tp_nearest(word, known, n) : NULL;
        char cmd[160];
        snprintf(cmd, sizeof cmd, "%s%s%s", cli->command, cli->subcommand ? " " : "",
                 cli->subcommand ? cli->subcommand : "");
        if (near)
            return tp_err(TP_ERR_CONFIG, "%s: unknown option '%s' (did you mean '%s'? see 'transpolmo %s --help')",
                          cmd, cli->rest[i], near, cmd);
        return tp_err(TP_ERR_CONFIG, "%s: unknown argument '%s' (see 'transpolmo %s --help')", cmd, cli->rest[i],
                      cmd);
    }
    return TP_OK;
}

