#!/usr/bin/env bash
# Bad input gets a clear one-line error naming the file and the problem, a non-zero
# exit, and leaves earlier results intact.
. "$(dirname "$0")/lib.sh"
export LC_ALL=C

good=$DATA/models/olmo2-mha-f32
fresh() {  # fresh <name>: a private copy of a test model
  rm -rf "$TMP/$1"; cp -r "$DATA/models/${2:-olmo2-mha-f32}" "$TMP/$1"; echo "$TMP/$1"
}
run_inspect() { "$BIN" inspect --model "$1" --out "$TMP/run" --set inspect.spectra=false; }

# A good run first: its result must survive every failure below.
expect_ok "good inspect" -- run_inspect "$good"
cp "$TMP/run/results/architecture.json" "$TMP/arch.before"

m=$(fresh missing_dir); rm -rf "$m"
expect_fail "missing model dir" "config.json|$m" rc=1 -- run_inspect "$m"

m=$(fresh truncated); f=$m/model.safetensors
truncate -s $(( $(stat -c %s "$f") - 100 )) "$f"
expect_fail "truncated safetensors" "$f|truncated" rc=1 -- run_inspect "$m"

m=$(fresh short); f=$m/model.safetensors; truncate -s 5 "$f"
expect_fail "file shorter than a header" "$f" rc=1 -- run_inspect "$m"

m=$(fresh hdrlen); f=$m/model.safetensors
printf '\xff\xff\xff\xff\xff\x00\x00\x00' | dd of="$f" bs=1 seek=0 conv=notrunc status=none
expect_fail "header length beyond file" "$f|header" rc=1 -- run_inspect "$m"

m=$(fresh offset); f=$m/model.safetensors
# Rewrite the first data_offsets end to a huge number of the same width.
hdr=$(head -c 4096 "$f" | tr -c '[:print:]' '\n' | grep -o '"data_offsets":\[[0-9]*,[0-9]*\]' | head -1)
end=${hdr##*,}; end=${end%]}
big=$(printf '9%.0s' $(seq 1 ${#end}))
sed -i "0,/\"data_offsets\":\[\([0-9]*\),$end\]/s//\"data_offsets\":[\1,$big]/" "$f"
expect_fail "data offset out of range" "$f|data_offsets" rc=1 -- run_inspect "$m"

m=$(fresh dtype); f=$m/model.safetensors
sed -i '0,/"F32"/s//"F99"/' "$f"
expect_fail "unsupported dtype" "$f|F99" rc=1 -- run_inspect "$m"

# Header length 2 short of the header: the JSON still parses (its padding is spaces),
# but every tensor would be read 2 bytes off -> NaN logits. The tensors must tile the
# data section exactly.
m=$(fresh hdrshort); f=$m/model.safetensors
python3 - "$f" <<'PY'
import struct, sys
p = sys.argv[1]; b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
open(p, 'wb').write(b[:8 + n] + b'  ' + b[8 + n:])   # 2 more header bytes, same length field
PY
expect_fail "header length 2 short" "$f|data section|disagree" rc=1 -- run_inspect "$m"

# A weight that is not finite (here: one F32 NaN; F32 bytes labelled F16 look the same).
m=$(fresh nan); f=$m/model.safetensors
python3 - "$f" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); e = h['model.layers.0.mlp.down_proj.weight']
o = 8 + n + e['data_offsets'][0] + 12
b[o:o + 4] = struct.pack('<f', float('nan')); open(p, 'wb').write(b)
PY
expect_fail "non-finite weight" "$f|model.layers.0.mlp.down_proj.weight|non-finite" rc=1 -- run_inspect "$m"

m=$(fresh shape); sed -i 's/"intermediate_size": 112/"intermediate_size": 113/' "$m/config.json"
expect_fail "shape mismatch with config" "shape|config.json|gate_proj" rc=1 -- run_inspect "$m"

m=$(fresh arch); sed -i 's/Olmo2ForCausalLM/GPT2LMHeadModel/' "$m/config.json"
expect_fail "unknown architecture" "GPT2LMHeadModel|not supported|$m/config.json" rc=1 -- run_inspect "$m"

m=$(fresh badjson); printf '{"architectures": [' > "$m/config.json"
expect_fail "corrupt config.json" "$m/config.json|JSON" rc=1 -- run_inspect "$m"

m=$(fresh shard olmo2-gqa-f16-sharded); s=$(ls "$m"/model-0000*-of-*.safetensors | tail -1); rm "$s"
expect_fail "missing shard" "$(basename "$s")" rc=1 -- run_inspect "$m"

printf 'data:\n  num_samples: many\n' > "$TMP/bad.yaml"
expect_fail "YAML type error" "$TMP/bad.yaml:2|data.num_samples|many" rc=2 -- "$BIN" inspect --config "$TMP/bad.yaml" --out "$TMP/run"

printf 'model:\n  pth: x\n' > "$TMP/bad2.yaml"
expect_fail "YAML unknown key" "$TMP/bad2.yaml:2|model.pth" rc=2 -- "$BIN" inspect --config "$TMP/bad2.yaml" --out "$TMP/run"

expect_fail "layer out of range (hook)" "blocks.7.hook_resid_post|out of range" rc=1 -- \
  "$BIN" forward --model "$good" --ids 1,2,3 --dump blocks.7.hook_resid_post --out "$TMP/run"
expect_fail "layer out of range (--layers)" "layers|out of range|0..1" -- \
  "$BIN" inspect --model "$good" --layers 0,5 --out "$TMP/run"
expect_fail "token id out of range" "vocabulary" rc=1 -- "$BIN" forward --model "$good" --ids 1,2,100000 --out "$TMP/run"
expect_fail "unknown option" "--bogus" -- "$BIN" inspect --model "$good" --bogus --out "$TMP/run"

if cmp -s "$TMP/arch.before" "$TMP/run/results/architecture.json"; then
  passes=$((passes + 1)); echo "ok   earlier result intact"
else
  failures=$((failures + 1)); echo "FAIL earlier result changed or lost"
fi
finish
