#!/usr/bin/env bash
# Train gan_jax on a Cloud TPU VM slice (single host or pod slice) with gcloud.
#
# Every worker VM of a slice runs the same command; `--distributed=auto` makes
# main.py call jax.distributed.initialize() with no arguments, and JAX reads
# the slice's topology from the TPU metadata. Checkpoints, samples and the
# TFDS data live in a gs:// bucket that all workers share. See launch/README.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "${SCRIPT_DIR}/.." && pwd)
readonly SCRIPT_DIR REPO_ROOT
# shellcheck source=SCRIPTDIR/lib.sh
source "${SCRIPT_DIR}/lib.sh"

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh [OPTIONS] SUBCOMMAND [-- EXTRA_MAIN_ARGS...]

Subcommands (usually in this order):
  create    create the TPU VM slice (--spot for a Spot slice)
  copy      copy this working tree (tracked and untracked, not ignored files)
            to ~/gan_jax on every worker; with --git-url, git clone there instead
  setup     on every worker: Python 3.11 venv ~/gan_jax_venv with jax[tpu]
            (the version pinned in pyproject.toml), gcsfs, and pip install -e ~/gan_jax
  run       start training on every worker in the background:
            python -m gan_jax.main --config=CONFIG --workdir=WORKDIR
              --distributed=auto --config.data.data_dir=DATA_DIR EXTRA_MAIN_ARGS
            (output goes to ~/gan_jax_run.log on each worker)
  logs      follow ~/gan_jax_run.log of one worker (--worker, default 0)
  stop      stop the training processes started by `run` on every worker
  status    describe the TPU VM (state, health, accelerator type)
  delete    delete the TPU VM slice

Options (each also read from the environment variable shown; flags win):
  --project=ID            GCP project                [GAN_PROJECT, CLOUDSDK_CORE_PROJECT]
  --zone=ZONE             zone, e.g. us-central2-b   [GAN_ZONE, CLOUDSDK_COMPUTE_ZONE]
  --tpu-name=NAME         TPU VM name                [GAN_TPU_NAME; default gan-jax]
  --accelerator-type=T    e.g. v4-32, v5litepod-16   [GAN_ACCELERATOR_TYPE; default v4-32]
  --version=V             TPU software version       [GAN_TPU_VERSION; default by type:
                          v4: tpu-ubuntu2204-base, v5e: v2-alpha-tpuv5-lite,
                          v5p: v2-alpha-tpuv5, v6e: v2-alpha-tpuv6e]
  --spot                  create a Spot slice (preemptible, cheaper) [GAN_SPOT=1]
  --bucket=gs://B         bucket for workdir and data [GAN_BUCKET]
  --config=PATH[:ARG]     config, relative to the repo [GAN_CONFIG; default configs/dcgan_digits.py]
  --workdir=gs://...      run directory              [GAN_WORKDIR; default BUCKET/runs/TPU_NAME]
  --data-dir=gs://...     TFDS data_dir              [GAN_DATA_DIR; default BUCKET/tfds]
  --git-url=URL           copy: clone URL on the workers instead of copying [GAN_GIT_URL]
  --git-ref=REF           copy: branch, tag or commit to check out [GAN_GIT_REF]
  --worker=W              logs: which worker to follow [default 0]
  --dry-run               print the commands (prefixed "+ ") and run nothing
  -h, --help              show this help

Arguments after `--` go to gan_jax.main unchanged, e.g. -- --config.train.num_steps=1000

Example (v4-32 = 4 workers x 4 chips):
  export GAN_PROJECT=my-project GAN_ZONE=us-central2-b GAN_BUCKET=gs://my-bucket
  launch/tpu_pod.sh --accelerator-type=v4-32 --tpu-name=gan-v4 create
  launch/tpu_pod.sh --tpu-name=gan-v4 copy
  launch/tpu_pod.sh --tpu-name=gan-v4 setup
  launch/tpu_pod.sh --tpu-name=gan-v4 --config=configs/dcgan_digits.py run -- --config.seed=1
  launch/tpu_pod.sh --tpu-name=gan-v4 logs
  launch/tpu_pod.sh --tpu-name=gan-v4 delete
EOF
}

# Names of things in each worker's home directory; the remote command strings
# write them unquoted after ~/, so they are restricted to plain characters.
readonly REMOTE_DIR=gan_jax
readonly REMOTE_VENV=gan_jax_venv
readonly REMOTE_LOG=gan_jax_run.log
readonly REMOTE_PID=gan_jax_run.pid
readonly REMOTE_TARBALL=gan_jax_code.tar.gz
# Seconds `run` watches the new process before reporting it started (a bad flag or
# config stops it sooner), and the most `stop` waits for the stop's checkpoint.
readonly START_CHECK_S=${GAN_START_CHECK_S:-20}
readonly STOP_WAIT_S=300

project=${GAN_PROJECT:-${CLOUDSDK_CORE_PROJECT:-}}
zone=${GAN_ZONE:-${CLOUDSDK_COMPUTE_ZONE:-}}
tpu_name=${GAN_TPU_NAME:-gan-jax}
accelerator_type=${GAN_ACCELERATOR_TYPE:-v4-32}
tpu_version=${GAN_TPU_VERSION:-}
spot=${GAN_SPOT:-0}
bucket=${GAN_BUCKET:-}
config=${GAN_CONFIG:-configs/dcgan_digits.py}
workdir=${GAN_WORKDIR:-}
data_dir=${GAN_DATA_DIR:-}
git_url=${GAN_GIT_URL:-}
git_ref=${GAN_GIT_REF:-}
worker=0
DRY_RUN=0
subcommand=
extra_args=()

while (($#)); do
  arg=$1
  case $arg in
    -h | --help)
      usage
      exit 0
      ;;
    --dry-run) DRY_RUN=1 ;;
    --spot) spot=1 ;;
    --)
      shift
      extra_args=("$@")
      break
      ;;
    --*)
      # Both --name=value and --name value.
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
        --project) project=$value ;;
        --zone) zone=$value ;;
        --tpu-name) tpu_name=$value ;;
        --accelerator-type) accelerator_type=$value ;;
        --version) tpu_version=$value ;;
        --bucket) bucket=$value ;;
        --config) config=$value ;;
        --workdir) workdir=$value ;;
        --data-dir) data_dir=$value ;;
        --git-url) git_url=$value ;;
        --git-ref) git_ref=$value ;;
        --worker) worker=$value ;;
        *) die "unknown option $name" ;;
      esac
      ;;
    *)
      if [[ -n $subcommand ]]; then
        die "more than one subcommand: $subcommand and $arg (main.py arguments go after --)"
      fi
      subcommand=$arg
      ;;
  esac
  shift
done

[[ -n $subcommand ]] || die 'no subcommand given (create, copy, setup, run, logs, stop, status, delete)'
[[ -n $project ]] || die 'no GCP project: pass --project=ID or set GAN_PROJECT'
[[ -n $zone ]] || die 'no zone: pass --zone=ZONE (e.g. us-central2-b for v4) or set GAN_ZONE'
[[ $tpu_name =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
  die "TPU name '$tpu_name' must be lower-case letters, digits and hyphens, starting with a letter"
if [[ -n $bucket ]]; then
  bucket=${bucket%/}
  [[ $bucket == gs://* ]] || bucket="gs://${bucket}"
fi

# The software version follows the TPU generation (from the Cloud TPU docs'
# runtime table); --version overrides it for other images.
default_tpu_version() {
  case $1 in
    v5litepod-* | v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) echo tpu-ubuntu2204-base ;;
  esac
}
[[ -n $tpu_version ]] || tpu_version=$(default_tpu_version "$accelerator_type")

gcloud_common=("--zone=${zone}" "--project=${project}")

# ssh_all COMMAND: runs the shell command string on every worker at once.
ssh_all() {
  run_cmd gcloud compute tpus tpu-vm ssh "$tpu_name" "${gcloud_common[@]}" \
    --worker=all "--command=$1"
}

# The jax version pinned in pyproject.toml, so the TPU workers run what the tests ran.
jax_version() {
  local version
  version=$(sed -n 's/^[[:space:]]*"jax==\([0-9][0-9.]*\)".*/\1/p' "${REPO_ROOT}/pyproject.toml")
  [[ -n $version ]] || die "could not read the jax==X pin from ${REPO_ROOT}/pyproject.toml"
  printf '%s' "$version"
}

cmd_create() {
  local args=(gcloud compute tpus tpu-vm create "$tpu_name" "${gcloud_common[@]}"
    "--accelerator-type=${accelerator_type}" "--version=${tpu_version}")
  if [[ $spot == 1 ]]; then
    args+=(--spot)
  fi
  run_cmd "${args[@]}"
}

cmd_copy() {
  if [[ -n $git_url ]]; then
    # Clone rather than `pip install git+URL`: configs/ lives outside the package
    # and --config=configs/... needs the files on disk.
    local clone
    clone="rm -rf ~/${REMOTE_DIR} && git clone $(shell_quote "$git_url") ~/${REMOTE_DIR}"
    if [[ -n $git_ref ]]; then
      clone+=" && git -C ~/${REMOTE_DIR} checkout $(shell_quote "$git_ref")"
    fi
    ssh_all "$clone"
    return
  fi
  local tarball
  if [[ $DRY_RUN == 1 ]]; then
    tarball=/tmp/gan_jax_code.XXXXXX.tar.gz
  else
    tarball=$(mktemp "${TMPDIR:-/tmp}/gan_jax_code.XXXXXX.tar.gz")
    # shellcheck disable=SC2064  # expand now: the path is fixed
    trap "rm -f '${tarball}'" EXIT
  fi
  # Tracked and untracked-but-not-ignored files: the working tree as you see it,
  # without .git, virtual environments or run directories.
  printf '+ git -C %s ls-files -z --cached --others --exclude-standard | tar -C %s --null -T - -czf %s\n' \
    "$(shell_quote "$REPO_ROOT")" "$(shell_quote "$REPO_ROOT")" "$tarball"
  if [[ $DRY_RUN != 1 ]]; then
    git -C "$REPO_ROOT" ls-files -z --cached --others --exclude-standard |
      tar -C "$REPO_ROOT" --null -T - -czf "$tarball"
  fi
  run_cmd gcloud compute tpus tpu-vm scp "$tarball" "${tpu_name}:${REMOTE_TARBALL}" \
    "${gcloud_common[@]}" --worker=all
  # Unpack next to the old copy and swap, so deleted files do not linger and the
  # editable install's path stays the same.
  ssh_all "rm -rf ~/${REMOTE_DIR}.new && mkdir ~/${REMOTE_DIR}.new && tar -xzf ~/${REMOTE_TARBALL} -C ~/${REMOTE_DIR}.new && rm -rf ~/${REMOTE_DIR} && mv ~/${REMOTE_DIR}.new ~/${REMOTE_DIR} && rm ~/${REMOTE_TARBALL}"
}

cmd_setup() {
  local version
  version=$(jax_version)
  # jax needs Python >= 3.11 and the TPU images ship 3.10, so uv provides the
  # interpreter. gcsfs lets tfds/etils read gs:// without TensorFlow.
  ssh_all "set -e; python3 -m pip install --user --quiet --upgrade uv && ~/.local/bin/uv venv --allow-existing --python 3.11 ~/${REMOTE_VENV} && ~/.local/bin/uv pip install --python ~/${REMOTE_VENV}/bin/python \"jax[tpu]==${version}\" gcsfs -e ~/${REMOTE_DIR} && ~/${REMOTE_VENV}/bin/python -c \"import jax, gan_jax; print(jax.__version__)\""
}

cmd_run() {
  if [[ -z $workdir ]]; then
    [[ -n $bucket ]] || die 'no workdir: pass --bucket=gs://B (workdir BUCKET/runs/NAME) or --workdir=gs://...'
    workdir="${bucket}/runs/${tpu_name}"
  fi
  if [[ -z $data_dir && -n $bucket ]]; then
    data_dir="${bucket}/tfds"
  fi
  if [[ $workdir != gs://* ]]; then
    echo "warning: workdir $workdir is not on gs://; every worker must see the same" \
      'directory for checkpoints, so it has to be a shared filesystem' >&2
  fi
  local main_args=(-m gan_jax.main "--config=${config}" "--workdir=${workdir}"
    --distributed=auto)
  if [[ -n $data_dir ]]; then
    main_args+=("--config.data.data_dir=${data_dir}")
  fi
  main_args+=("${extra_args[@]}")
  # nohup with every stream redirected lets the ssh session end while training
  # goes on; the pid file is for `stop`. A run still going is never replaced (its pid
  # would be lost to `stop`); the log is appended to. A process that ends within
  # START_CHECK_S with an error fails `run`, showing the log's end.
  ssh_all "cd ~/${REMOTE_DIR} || exit 1; if [ -f ~/${REMOTE_PID} ] && kill -0 \"\$(cat ~/${REMOTE_PID})\" 2>/dev/null; then echo \"gan_jax: a run (pid \$(cat ~/${REMOTE_PID})) is still going on \$(hostname); stop it first (tpu_pod.sh stop)\" >&2; exit 3; fi; echo \"=== gan_jax run started \$(date -u +%Y-%m-%dT%H:%M:%SZ)\" >> ~/${REMOTE_LOG}; nohup ~/${REMOTE_VENV}/bin/python $(shell_quote "${main_args[@]}") >> ~/${REMOTE_LOG} 2>&1 < /dev/null & pid=\$!; echo \$pid > ~/${REMOTE_PID}; sleep ${START_CHECK_S}; if ! kill -0 \$pid 2>/dev/null; then wait \$pid; status=\$?; if [ \$status -ne 0 ]; then echo \"gan_jax: the run on \$(hostname) stopped with status \$status:\" >&2; tail -n 20 ~/${REMOTE_LOG} >&2; exit \$status; fi; fi"
  if [[ $DRY_RUN == 1 ]]; then
    echo "(dry run: nothing was started on ${tpu_name})"
  else
    echo "Started on all workers of ${tpu_name}. Follow worker 0 with: $0 --tpu-name=${tpu_name} logs"
  fi
}

cmd_logs() {
  [[ $worker =~ ^[0-9]+$ ]] || die "--worker must be a worker index (0, 1, ...), got '$worker'"
  run_cmd gcloud compute tpus tpu-vm ssh "$tpu_name" "${gcloud_common[@]}" \
    "--worker=${worker}" "--command=tail -n 200 -F ~/${REMOTE_LOG}"
}

# SIGTERM makes gan_jax save a checkpoint and exit; `stop` returns once every worker's
# process has exited, so a `delete` after it cannot cut the save short.
cmd_stop() {
  ssh_all "if [ -f ~/${REMOTE_PID} ]; then pid=\$(cat ~/${REMOTE_PID}); kill \$pid 2>/dev/null || true; i=0; while kill -0 \$pid 2>/dev/null && [ \$i -lt $((STOP_WAIT_S * 2)) ]; do sleep 0.5; i=\$((i + 1)); done; if kill -0 \$pid 2>/dev/null; then echo \"gan_jax: pid \$pid on \$(hostname) still runs after ${STOP_WAIT_S} s; kill -9 \$pid ends it without a checkpoint\" >&2; exit 1; fi; rm -f ~/${REMOTE_PID}; echo \"gan_jax: stopped on \$(hostname)\"; fi"
}

cmd_status() {
  run_cmd gcloud compute tpus tpu-vm describe "$tpu_name" "${gcloud_common[@]}"
}

cmd_delete() {
  run_cmd gcloud compute tpus tpu-vm delete "$tpu_name" "${gcloud_common[@]}"
}

if ((${#extra_args[@]})) && [[ $subcommand != run ]]; then
  die "arguments after -- are for 'run' only, not '$subcommand'"
fi

case $subcommand in
  create) cmd_create ;;
  copy) cmd_copy ;;
  setup) cmd_setup ;;
  run) cmd_run ;;
  logs) cmd_logs ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  delete) cmd_delete ;;
  *) die "unknown subcommand '$subcommand' (known: create, copy, setup, run, logs, stop, status, delete)" ;;
esac
