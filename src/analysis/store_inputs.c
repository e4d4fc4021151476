/* store_inputs.c — fingerprints of the store's weights and corpus (store_inputs.h). */
#include "analysis/store_inputs.h"

#include "core/fsutil.h"
#include "dist/world.h"
#include "io/corpus.h"
#include "io/safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tp_status store_inputs_compute(const char *model_dir, const char *corpus_spec, store_inputs *out)
{
    fs_fingerprint w, c;
    TP_CHECK(st_fingerprint_dir(model_dir, &w));
    TP_CHECK(corpus_fingerprint(corpus_spec, &c));
    *out = (store_inputs){.weights_bytes = w.bytes, .weights_mtime_ns = w.mtime_ns, .corpus_bytes = c.bytes,
                          .corpus_mtime_ns = c.mtime_ns};
    snprintf(out->weights_fp, sizeof out->weights_fp, "%016" PRIx64, w.hash);
    snprintf(out->corpus_fp, sizeof out->corpus_fp, "%016" PRIx64, c.hash);
    return TP_OK;
}

void store_inputs_provenance(const store_inputs *in, store_prov out[STORE_INPUTS_N])
{
    out[0] = (store_prov){"weights_bytes", NULL, in->weights_bytes};
    out[1] = (store_prov){"weights_mtime_ns", NULL, in->weights_mtime_ns};
    out[2] = (store_prov){"weights_fingerprint", in->weights_fp, 0};
    out[3] = (store_prov){"corpus_bytes", NULL, in->corpus_bytes};
    out[4] = (store_prov){"corpus_mtime_ns", NULL, in->corpus_mtime_ns};
    out[5] = (store_prov){"corpus_fingerprint", in->corpus_fp, 0};
}

static tp_status check_here(tp_store *s, const char *store_path)
{
    char model[TP_PATH_MAX], corpus_spec[TP_PATH_MAX], got[64], want[64];
    store_attr(s, "weights_fingerprint", got, sizeof got);
    if (!got[0]) return TP_OK;   /* captured before the weights were fingerprinted */
    store_attr(s, "model_path", model, sizeof model);
    store_attr(s, "corpus", corpus_spec, sizeof corpus_spec);
    store_inputs now;
    tp_status st = store_inputs_compute(model, corpus_spec, &now);
    if (st != TP_OK)
        return tp_err(TP_ERR_CONFIG, "%s: cannot check the inputs it was captured from: %s", store_path,
                      tp_err_msg());
    store_prov p[STORE_INPUTS_N];
    store_inputs_provenance(&now, p);
    for (int i = 0; i < STORE_INPUTS_N; i++) {
        store_attr(s, p[i].key, got, sizeof got);
        if (p[i].text) snprintf(want, sizeof want, "%s", p[i].text);
        else snprintf(want, sizeof want, "%" PRId64, p[i].num);
        if (strcmp(got, want) == 0) continue;
        int weights = i < 3;
        return tp_err(TP_ERR_CONFIG,
                      "%s: the %s changed since capture (%s = '%s' in the store, '%s' now in %s); capture again "
                      "into a new run directory, or restore the %s",
                      store_path, weights ? "model weights" : "corpus", p[i].key, got, want,
                      weights ? model : corpus_spec, weights ? "weights" : "corpus");
    }
    return TP_OK;
}

tp_status store_inputs_check(tp_store *s, const char *store_path, MPI_Comm comm)
{
    return dist_agree(comm, check_here(s, store_path), "store inputs");
}
