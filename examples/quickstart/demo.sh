#!/usr/bin/env bash
# The quickstart end to end on this machine (CPU, no cluster, no downloads), as `make demo` runs it:
#   1. make the base model: a tiny random Llama with a tokenizer trained on the quickstart's text;
#   2. `kubetune run`: train it on StayQL, score every checkpoint against the few-shot baseline,
#      serve the best passing checkpoint on localhost, send it one request, stop.
# Run it again and finished steps are skipped; interrupt training (Ctrl-C) and it resumes.
# Extra arguments go to `kubetune run` (e.g. --fresh to start over, or drop --no-wait by running
# `kubetune run examples/quickstart` yourself to keep the server up).
set -euo pipefail
cd "$(dirname "$0")/../.."
KUBETUNE=${KUBETUNE:-kubetune}
RUNS=${RUNS:-runs}
MODEL="$RUNS/namespaces/team-travel/pvc/models/tiny-travel"   # what pvc://models/tiny-travel means locally in namespace team-travel

if [ ! -f "$MODEL/config.json" ]; then
  "$KUBETUNE" model init-tiny "$MODEL" \
    --from-data examples/quickstart/data/train.jsonl examples/quickstart/data/validation.jsonl
fi
exec "$KUBETUNE" run examples/quickstart --runs-dir "$RUNS" --no-wait "$@"
