#!/usr/bin/env bash
# CI: two `crossbench tune --worker` processes share one study on a real PostgreSQL server.
#
# Starts a throw-away PostgreSQL server (Debian's `postgresql`, installed with apt-get where
# missing) on 127.0.0.1 at a free port, with its data in a temporary folder; runs two workers at
# once against one study; checks that the study holds exactly the trial budget of COMPLETE or
# PRUNED trials, with distinct numbers and distinct parameter sets; stops the server on any exit.
# If PostgreSQL cannot be installed or started this fails, unless CROSSBENCH_CI_SKIP_POSTGRES=1,
# which prints a "SKIPPED: PostgreSQL tuning check (...)" line instead.
set -euo pipefail
cd "$(dirname "$0")/.."

TRIALS=6
STUDY=ci-postgres
PY=.venv/bin/python
[ -x .venv/bin/crossbench ] || { echo "PostgreSQL tuning check: no .venv/bin/crossbench; run .ci/run (which makes .venv) first" >&2; exit 1; }

unavailable() {  # PostgreSQL itself is missing or would not start
  if [ "${CROSSBENCH_CI_SKIP_POSTGRES:-}" = 1 ]; then
    echo "SKIPPED: PostgreSQL tuning check ($1; CROSSBENCH_CI_SKIP_POSTGRES=1)"
    exit 0
  fi
  echo "PostgreSQL tuning check: $1; make PostgreSQL installable (apt-get, as root) or set CROSSBENCH_CI_SKIP_POSTGRES=1 to skip this check" >&2
  exit 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

bin=$(pg_bin)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "+ apt-get install -y postgresql"
  { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
    || unavailable "apt-get could not install postgresql"
  bin=$(pg_bin)
  [ -n "$bin" ] && [ -x "$bin/initdb" ] || unavailable "no initdb under /usr/lib/postgresql after installing postgresql"
fi

# The server refuses to run as root: as root, run it as the `postgres` user.
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || unavailable "there is no postgres user to run the server as"
  if command -v runuser >/dev/null; then
    as_pg() { runuser -u postgres -- "$@"; }
  else
    as_pg() { su -s /bin/sh postgres -c "$(printf '%q ' "$@")"; }
  fi
else
  as_pg() { "$@"; }
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/crossbench-pg.XXXXXX")
data="$tmp/data"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -f "$data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # so that the EXIT trap stops the server on an interrupt too
[ "$(id -u)" = 0 ] && chown postgres "$tmp"

port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=$("$PY" -c 'import secrets; print(secrets.token_hex(12))')
as_pg "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-instructions >"$tmp/initdb.log" 2>&1 \
  || { tail -n 20 "$tmp/initdb.log" >&2; unavailable "initdb failed"; }
as_pg "$bin/pg_ctl" -D "$data" -l "$tmp/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $tmp -c fsync=off -c max_connections=50" start >/dev/null \
  || { tail -n 20 "$tmp/server.log" >&2 2>/dev/null || true; unavailable "the server did not start"; }
psql() { as_pg "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$tmp" -p "$port" -U postgres "$@"; }
psql -d postgres -c "CREATE ROLE crossbench LOGIN PASSWORD '$password'" -c "CREATE DATABASE crossbench OWNER crossbench"
url="postgresql+psycopg2://crossbench:$password@127.0.0.1:$port/crossbench"
echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, database crossbench"

echo "+ .venv/bin/pip install -q psycopg2-binary"
.venv/bin/pip install -q psycopg2-binary

tune=(.venv/bin/crossbench tune --worker --model mf --dataset-param n_users=600 --dataset-param n_items=150 --seeds 0
      --trials "$TRIALS" --threads 1 -q --study "$STUDY" --output "$tmp/out" --storage "$url")
echo "+ two workers at once: crossbench tune --worker ... --trials $TRIALS --study $STUDY --storage postgresql+psycopg2://crossbench:***@127.0.0.1:$port/crossbench"
"${tune[@]}" >"$tmp/worker1.log" 2>&1 & pids+=($!)
"${tune[@]}" >"$tmp/worker2.log" 2>&1 & pids+=($!)
status=0
for i in 0 1; do
  if ! wait "${pids[$i]}"; then
    status=1
    echo "worker $((i + 1)) failed:" >&2
    tail -n 30 "$tmp/worker$((i + 1)).log" >&2
  fi
done
pids=()
[ "$status" = 0 ] || exit 1

CROSSBENCH_PG_URL="$url" "$PY" - "$STUDY/movies/seed0/mf" "$TRIALS" <<'EOF'
"""The shared study holds exactly the budget of counted trials, none run twice."""
import collections
import os
import sys

import optuna

name, budget = sys.argv[1], int(sys.argv[2])
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name=name, storage=os.environ["CROSSBENCH_PG_URL"])
trials = study.get_trials(deepcopy=False)
states = collections.Counter(t.state.name for t in trials)
counted = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
surplus = sum(1 for t in trials if t.user_attrs.get("crossbench:surplus"))
numbers = [t.number for t in trials]
# Most trials running at one moment: 2 shows that both workers ran trials of the study at once.
events = sorted((x, d) for t in counted for x, d in ((t.datetime_start, 1), (t.datetime_complete, -1)))
at_once = most = 0
for _, d in events:
    at_once += d
    most = max(most, at_once)
param_sets = [tuple(sorted(t.params.items())) for t in counted]
print(f"study {name}: {len(trials)} trials in all, {dict(sorted(states.items()))}, {surplus} surplus, "
      f"{len(counted)} counted (budget {budget}), {len(set(param_sets))} distinct parameter sets, at most {most} running at once")
problems = []
if len(counted) != budget:
    problems.append(f"{len(counted)} COMPLETE or PRUNED trials, expected {budget}")
if len(set(numbers)) != len(numbers):
    problems.append(f"duplicate trial numbers {sorted(numbers)}")
if len(set(param_sets)) != len(param_sets):
    problems.append("two counted trials have the same parameters")
if most < 2:
    problems.append("no two trials ran at the same time, so the workers did not share the study")
if problems:
    sys.exit("PostgreSQL tuning check failed: " + "; ".join(problems))
print("PostgreSQL tuning check passed")
EOF
