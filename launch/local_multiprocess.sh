#!/usr/bin/env bash
# Run N gan_jax processes on this machine as one multi-process JAX job on fake CPU devices.
#
# Each process gets K fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=K,
# JAX_PLATFORMS=cpu) and the explicit distributed flags --coordinator_address
# (127.0.0.1 at a free port), --num_processes and --process_id: the same path
# the multi-process tests use, so a pod or cluster run can be rehearsed on a
# laptop. Waits for all processes; if one fails the others are stopped (they
# would wait forever in a collective) and the script exits with its status.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "${SCRIPT_DIR}/.." && pwd)
readonly SCRIPT_DIR REPO_ROOT
# shellcheck source=SCRIPTDIR/lib.sh
source "${SCRIPT_DIR}/lib.sh"

usage() {
  cat <<'EOF'
Usage: launch/local_multiprocess.sh [OPTIONS] N [EXTRA_MAIN_ARGS...]

Starts N processes of
  JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=K \
    PYTHON -m gan_jax.main --distributed=explicit --coordinator_address=127.0.0.1:PORT \
    --num_processes=N --process_id=I EXTRA_MAIN_ARGS
and prefixes each output line with "[I] ". Options go before N; everything after
N is passed to gan_jax.main unchanged.

Options (each also read from the environment variable shown; flags win):
  --devices-per-process=K  fake CPU devices per process [GAN_DEVICES_PER_PROCESS; default 2]
  --python=PATH            interpreter with gan_jax installed [GAN_PYTHON; default
                           .venv/bin/python of the repo if present, else python3]
  --port=P                 coordinator port [default: a free port]
  --log-dir=DIR            also write process I's output to DIR/process_I.log
  --timeout=SECONDS        stop all processes and exit 124 after this long [default 0 = none]
  --dry-run                print the commands (prefixed "+ ") and run nothing
  -h, --help               show this help

Example (2 processes x 2 devices = a 4-device data-parallel run):
  launch/local_multiprocess.sh 2 --config=configs/dcgan_digits.py:smoke --workdir=/tmp/gan_mp
EOF
}

devices_per_process=${GAN_DEVICES_PER_PROCESS:-2}
python=${GAN_PYTHON:-}
port=
log_dir=
timeout_s=0
DRY_RUN=0

while (($#)); do
  arg=$1
  case $arg in
    -h | --help)
      usage
      exit 0
      ;;
    --dry-run) DRY_RUN=1 ;;
    --*)
      if [[ $arg == *=* ]]; then
        name=${arg%%=*}
        value=${arg#*=}
      else
        name=$arg
        value=${2-}
        shift || true
      fi
      require_value "$name" "$value"
      case $name in
        --devices-per-process) devices_per_process=$value ;;
        --python) python=$value ;;
        --port) port=$value ;;
        --log-dir) log_dir=$value ;;
        --timeout) timeout_s=$value ;;
        *) die "unknown option $name (options go before N; main.py arguments after N)" ;;
      esac
      ;;
    *) break ;;
  esac
  shift
done

(($#)) || die 'missing N, the number of processes'
num_processes=$1
shift
extra_args=("$@")
[[ $num_processes =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, got '$num_processes'"
[[ $devices_per_process =~ ^[1-9][0-9]*$ ]] ||
  die "--devices-per-process must be a positive integer, got '$devices_per_process'"
[[ $timeout_s =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds, got '$timeout_s'"
if [[ -z $python ]]; then
  if [[ -x ${REPO_ROOT}/.venv/bin/python ]]; then
    python=${REPO_ROOT}/.venv/bin/python
  else
    python=python3
  fi
fi

if [[ -z $port ]]; then
  if [[ $DRY_RUN == 1 ]]; then
    port=12345  # nothing listens in a dry run; a fixed number keeps the output stable
  else
    # Bind to port 0 and let the kernel pick; the tiny race until process 0
    # binds it is acceptable on a developer machine.
    port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
fi
[[ $port =~ ^[0-9]+$ ]] || die "--port must be a port number, got '$port'"

# Keep the caller's XLA flags but not an earlier device count, which would
# contradict --devices-per-process. (Arrays that may be empty expand as
# ${a[@]+"${a[@]}"}: bash before 4.4, macOS's 3.2 included, calls an empty "${a[@]}"
# unbound under set -u.)
xla_flags=
read -r -a caller_xla_flags <<<"${XLA_FLAGS:-}"
for flag in ${caller_xla_flags[@]+"${caller_xla_flags[@]}"}; do
  [[ $flag == --xla_force_host_platform_device_count=* ]] || xla_flags+="${flag} "
done
xla_flags+="--xla_force_host_platform_device_count=${devices_per_process}"

pids=()

# Stops the processes that are still running (only the ones this script
# started): each runs in its own process group (set -m below), so any children
# it spawned, e.g. data-loading workers, stop with it.
stop_all() {
  local pid
  for pid in ${pids[@]+"${pids[@]}"}; do
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    fi
  done
}
# Seconds a stopped process gets to save its checkpoint before it is killed.
readonly STOP_GRACE_S=60

# Stops the running processes and waits until they exit (killing any still there after
# STOP_GRACE_S), so that a rerun does not meet them on the workdir or the port.
stop_and_wait() {
  local pid deadline=$((SECONDS + STOP_GRACE_S)) alive
  stop_all
  while :; do
    alive=0
    for pid in ${pids[@]+"${pids[@]}"}; do
      if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        alive=1
      fi
    done
    ((alive)) || break
    if ((SECONDS >= deadline)); then
      echo "local_multiprocess: processes still running ${STOP_GRACE_S}s after the stop; killing them" >&2
      for pid in ${pids[@]+"${pids[@]}"}; do
        [[ -z $pid ]] || kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      done
      break
    fi
    sleep 0.2
  done
  for pid in ${pids[@]+"${pids[@]}"}; do
    [[ -z $pid ]] || wait "$pid" 2>/dev/null || true
  done
}
trap 'stop_all' EXIT
trap 'stop_and_wait; exit 130' INT
trap 'stop_and_wait; exit 143' TERM

# Copies stdin to stdout with a "[I] " prefix (and to a log file when given).
prefix_lines() {
  local index=$1 log_file=${2-} line
  # It shares its process's group (bash starts it from the forked child), so the stop
  # signal reaches it too: it ignores the signal and ends when the process's output
  # closes, after the process's last lines (its stop message, its summary).
  trap '' INT TERM
  while IFS= read -r line || [[ -n $line ]]; do
    printf '[%s] %s\n' "$index" "$line"
    if [[ -n $log_file ]]; then
      printf '%s\n' "$line" >>"$log_file"
    fi
  done
}

if [[ -n $log_dir && $DRY_RUN != 1 ]]; then
  mkdir -p "$log_dir"
fi

# Job control gives every background process its own process group.
set -m
for ((i = 0; i < num_processes; i++)); do
  cmd=(env JAX_PLATFORMS=cpu "XLA_FLAGS=${xla_flags}" "$python" -m gan_jax.main
    --distributed=explicit "--coordinator_address=127.0.0.1:${port}"
    "--num_processes=${num_processes}" "--process_id=${i}" ${extra_args[@]+"${extra_args[@]}"})
  printf '+ %s\n' "$(shell_quote "${cmd[@]}")"
  if [[ $DRY_RUN == 1 ]]; then
    continue
  fi
  log_file=
  if [[ -n $log_dir ]]; then
    log_file="${log_dir}/process_${i}.log"
    : >"$log_file"
  fi
  # `env` execs python, so $! is the training process itself.
  "${cmd[@]}" > >(prefix_lines "$i" "$log_file") 2>&1 &
  pids+=("$!")
done
# The groups are set; without job control bash does not print "Terminated" lines.
set +m
if [[ $DRY_RUN == 1 ]]; then
  exit 0
fi

# Polls rather than `wait -n` so that a failure of any process is seen at once,
# whatever order they finish in.
running=$num_processes
status=0
while ((running > 0)); do
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    [[ -n $pid ]] || continue
    kill -0 "$pid" 2>/dev/null && continue
    pids[i]=
    running=$((running - 1))
    if wait "$pid"; then
      continue
    else
      code=$?
    fi
    if ((status == 0)); then
      status=$code
      echo "local_multiprocess: process ${i} exited with status ${code}; stopping the others" >&2
      stop_all
    fi
  done
  if ((timeout_s > 0 && SECONDS >= timeout_s && running > 0)); then
    echo "local_multiprocess: still running after ${timeout_s}s; stopping all processes" >&2
    stop_and_wait
    exit 124
  fi
  ((running == 0)) || sleep 0.2
done
# Let the output prefixers drain before returning.
wait || true
if ((status == 0)); then
  echo "local_multiprocess: all ${num_processes} processes finished" >&2
fi
exit "$status"
