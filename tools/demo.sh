#!/bin/bash
# Demo: build and install r1_pg, start a throwaway PostgreSQL cluster with the
# extension preloaded, ask the model one question with r1_reason(), stop the
# cluster.  Uses the model in $R1_MODEL when set: a checkpoint directory or a
# .gguf file, or a name to pull first (`bin/r1 pull`): a Hugging Face repository
# such as deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B, or ollama:deepseek-r1:1.5b;
# else a small generated demo model.  Run as root, the pull goes to
# $R1_PULL_DIR (default /var/cache/r1_pg/models), which the postgres user can
# read; otherwise to the usual cache (~/.cache/huggingface/hub, ~/.ollama/models).
# R1_DEVICE (auto|cuda|cpu) sets r1.device.
# Run as root (the server then runs as the OS user "postgres") or as a user
# who may write to the PostgreSQL installation.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG_CONFIG=${PG_CONFIG:-pg_config}

tools/install-deps.sh
echo "== build and install"
make -j"$(nproc)" >/dev/null
make install >/dev/null

TMP=$(mktemp -d /tmp/r1_pg_demo.XXXXXX)
chmod 755 "$TMP"
. test/lib/cluster.sh
trap 'r1_cluster_stop; rm -rf "$TMP"' EXIT

if [ -n "${R1_MODEL:-}" ]; then
	if [ ! -e "$R1_MODEL" ] && [[ "$R1_MODEL" == ollama:* || "$R1_MODEL" =~ ^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$ ]]; then
		pull_dir=${R1_PULL_DIR:-}
		if [ "$(id -u)" -eq 0 ] && [ -z "$pull_dir" ]; then
			pull_dir=/var/cache/r1_pg/models
		fi
		echo "== r1 pull $R1_MODEL${pull_dir:+ --dir $pull_dir}"
		R1_MODEL=$(bin/r1 pull "$R1_MODEL" ${pull_dir:+--dir "$pull_dir"})
	fi
	model=$(realpath -s "$R1_MODEL")
	echo "== model: $model (from R1_MODEL)"
	check=$model
	[ -d "$model" ] && check=$model/config.json
	if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -r "$check"; then
		echo "demo: the postgres user cannot read $check; make it readable (or set R1_PULL_DIR)" >&2
		exit 1
	fi
else
	model=$TMP/model
	bin/r1 demo-model --out "$model" >/dev/null
	chmod -R a+rX "$model"
	echo "== model: the small generated demo model (set R1_MODEL, e.g. to deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B, for a real one)"
fi

echo "== cluster in $TMP"
r1_cluster_start "$TMP" "$model" "r1.device = '${R1_DEVICE:-auto}'"
r1_wait_state ready 600
"$R1_PGBIN/psql" -X -c "SELECT state, model_name, device, max_ctx FROM r1_status()"

# R1_DEMO_MAX_TOKENS caps the trace (a real model on a CPU is slow); default r1.max_tokens_default
echo "== SELECT * FROM r1_reason(...)"
"$R1_PGBIN/psql" -X -x \
	${R1_DEMO_MAX_TOKENS:+-c "SET r1.max_tokens_default = $R1_DEMO_MAX_TOKENS"} \
	-c "SELECT * FROM r1_reason('What is 6*7? Please reason step by step, and put your final answer within \\boxed{}.')"
