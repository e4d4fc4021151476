#include "cmd/eval_cmd.h"

#include "model/model_io.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "dist/mpi_check.h"
#include "dist/world.h"
#include "io/corpus.h"
#include "data/dataset.h"
#include "io/npy.h"
#include "data/sequences.h"
#include "model/lm_loss.h"
#include "run_layout.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DOMAINS 64

/* Domain index of every sequence (same on every rank: all read the same corpus). */
static tp_status domains_of(const corpus *c, const tp_sequences *s, int *dom, char names[][64], int *ndom)
{
    *ndom = 0;
    size_t last_doc = (size_t)-1;
    int last_dom = -1;
    for (size_t i = 0; i < s->n_seqs; i++) {
        if (s->seq_doc[i] != last_doc) {
            corpus_doc d;
            TP_CHECK(corpus_read(c, s->seq_doc[i], &d));
            const char *name = d.domain[0] ? d.domain : "(none)";
            last_dom = -1;
            for (int k = 0; k < *ndom && last_dom < 0; k++)
                if (!strcmp(names[k], name)) last_dom = k;
            if (last_dom < 0 && *ndom < MAX_DOMAINS) {
                snprintf(names[*ndom], 64, "%s", name);
                last_dom = (*ndom)++;
            }
            if (last_dom < 0) last_dom = MAX_DOMAINS - 1;   /* folded into the last */
            corpus_doc_free(&d);
            last_doc = s->seq_doc[i];
        }
        dom[i] = last_dom;
    }
    return TP_OK;
}

tp_status eval_cmd_run(tp_cli *cli)
{
    const char *per_token_out = cli_take_value(cli, "--per-token-out");
    TP_CHECK(cli_reject_rest(cli));
    const tp_settings *set = &cli->set;
    int rank = dist_rank(), size = dist_size();

    tp_model *m = NULL;
    tp_tokenizer *tok = NULL;
    tp_dataset data = {0};
    tp_forward *f = NULL;
    int *dom = NULL;
    float *per_tok = NULL, *all_tok = NULL;
    double *seq_sum = NULL;
    json_t *doc = NULL;
    tp_status st;

    TP_CHECK_GOTO(model_io_open(&set->model, &m, &tok), st, done);
    TP_CHECK_GOTO(dataset_open(&set->data, tok, m->cfg.eos_token_id, "eval", &data), st, done);
    const tp_sequences seqs = data.seqs;
    corpus *c = data.corpus;
    size_t ndocs = data.ndocs;
    int seq_len = data.seq_len;
    tp_packing packing = data.packing;
    /* Loss needs a next token: a sample of one-token documents has no position to
     * predict (the same on every rank, so every rank stops here). */
    size_t n_pred = 0, n_short = 0;
    for (size_t i = 0; i < seqs.n_seqs; i++) n_pred += sequences_len(&seqs, i) > 1 ? sequences_len(&seqs, i) - 1 : 0;
    for (size_t i = 0; i < seqs.n_docs; i++) n_short += seqs.doc_start[i + 1] - seqs.doc_start[i] < 2;
    if (n_pred == 0) {
        st = tp_err(TP_ERR_FORMAT, "eval: nothing to evaluate in '%s': %zu of the %zu sampled documents have fewer "
                    "than 2 tokens, and no sequence has a next token to predict", set->data.corpus, n_short, ndocs);
        goto done;
    }

    /* Contiguous runs of sequences per rank. */
    size_t lo = seqs.n_seqs * (size_t)rank / (size_t)size, hi = seqs.n_seqs * (size_t)(rank + 1) / (size_t)size;
    tp_sequences mine = seqs;
    mine.n_seqs = hi - lo;
    mine.seq_start = seqs.seq_start + lo;
    mine.seq_doc = seqs.seq_doc + lo;
    int batch = set->batch_size;
    TP_CHECK_GOTO(forward_new(m, batch, seq_len, &f), st, done);
    size_t my_pred = 0;
    for (size_t i = lo; i < hi; i++) my_pred += sequences_len(&seqs, i) > 1 ? sequences_len(&seqs, i) - 1 : 0;
    per_tok = tp_malloc((my_pred ? my_pred : 1) * sizeof *per_tok);
    seq_sum = tp_calloc(seqs.n_seqs, sizeof *seq_sum);
    dom = tp_malloc(seqs.n_seqs * sizeof *dom);
    if (!per_tok || !seq_sum || !dom) { st = TP_ERR_NOMEM; goto done; }
    tp_loss_total tot;
    tp_log_info("eval: %zu documents -> %zu sequences (%s, %d tokens), %d rank(s)", ndocs, seqs.n_seqs,
                packing == TP_PACK_PACK ? "packed" : "split", seq_len, size);
    TP_CHECK_GOTO(lm_loss_sequences(f, &mine, batch, NULL, per_tok, seq_sum + lo, &tot), st, done);

    /* Per-domain sums: every rank fills its own sequences, zeros elsewhere. */
    char names[MAX_DOMAINS][64];
    int ndom = 0;
    TP_CHECK_GOTO(domains_of(c, &seqs, dom, names, &ndom), st, done);
    double dsum[MAX_DOMAINS] = {0}, dcnt[MAX_DOMAINS] = {0}, gsum[MAX_DOMAINS], gcnt[MAX_DOMAINS];
    for (size_t i = lo; i < hi; i++) {
        size_t T = sequences_len(&seqs, i);
        dsum[dom[i]] += seq_sum[i];
        dcnt[dom[i]] += T > 1 ? (double)(T - 1) : 0;
    }
    MPI_CHECK(MPI_Reduce(dsum, gsum, MAX_DOMAINS, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD));
    MPI_CHECK(MPI_Reduce(dcnt, gcnt, MAX_DOMAINS, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD));

    if (per_token_out) {
        /* Gather every rank's per-token losses in sequence order. */
        int mine_n = (int)my_pred, *counts = NULL, *displs = NULL;
        if (rank == 0) {
            counts = tp_calloc((size_t)size, sizeof *counts);
            displs = tp_calloc((size_t)size, sizeof *displs);
        }
        MPI_CHECK(MPI_Gather(&mine_n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD));
        size_t total_n = 0;
        if (rank == 0)
            for (int r = 0; r < size; r++) displs[r] = (int)total_n, total_n += (size_t)counts[r];
        if (rank == 0) all_tok = tp_malloc((total_n ? total_n : 1) * sizeof *all_tok);
        MPI_CHECK(MPI_Gatherv(per_tok, mine_n, MPI_FLOAT, all_tok, counts, displs, MPI_FLOAT, 0, MPI_COMM_WORLD));
        if (rank == 0) {
            int64_t shape[1] = {(int64_t)total_n};
            st = fs_mkdir_parent(per_token_out);
            if (st == TP_OK) st = npy_write(per_token_out, TP_DTYPE_F32, 1, shape, all_tok);
        }
        free(counts);
        free(displs);
        if (st != TP_OK) goto done;
    }
    if (rank == 0) {
        double sum = 0, cnt = 0;
        json_t *per = json_object();
        for (int k = 0; k < ndom; k++) {
            sum += gsum[k], cnt += gcnt[k];
            if (gcnt[k] > 0)
                json_object_set_new(per, names[k], json_pack("{s:I, s:f, s:f}", "tokens", (json_int_t)gcnt[k],
                                                             "loss", gsum[k] / gcnt[k], "perplexity", exp(gsum[k] / gcnt[k])));
        }
        uint64_t ch = 0;
        TP_CHECK_GOTO(corpus_hash(c, &ch), st, done);
        char hash[32];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)ch);
        doc = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:s, s:f, s:f, s:o, s:s}",
                        "model", set->model.dir, "corpus", set->data.corpus,
                        "corpus_hash", hash, "documents", (json_int_t)ndocs, "sequences", (json_int_t)seqs.n_seqs,
                        "tokens_predicted", (json_int_t)cnt, "seq_len", seq_len,
                        "packing", packing == TP_PACK_PACK ? "pack" : "split", "loss", sum / cnt,
                        "perplexity", exp(sum / cnt), "per_domain", per,
                        "definition", "mean next-token cross-entropy in nats over every predicted position of every sequence; perplexity = exp(loss)");
        char path[TP_PATH_MAX];
        TP_CHECK_GOTO(run_path(path, sizeof path, cli->run_dir, RUN_EVAL_JSON), st, done);
        TP_CHECK_GOTO(fs_mkdir_parent(path), st, done);
        TP_CHECK_GOTO(fs_write_json(path, doc), st, done);
        printf("loss %.6f nats/token, perplexity %.3f over %.0f tokens\n", sum / cnt, exp(sum / cnt), cnt);
        tp_log_info("eval: wrote %s", path);
    }
    st = TP_OK;
done:
    json_decref(doc);
    free(all_tok);
    free(per_tok);
    free(seq_sum);
    free(dom);
    forward_free(f);
    dataset_close(&data);
    tokenizer_free(tok);
    model_close(m);
    return st;
}
