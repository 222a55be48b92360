# shellcheck shell=bash
# Helpers shared by the launch scripts (sourced, never run): shell quoting,
# dry-run-aware command execution, and errors a user can act on.
#
# A script sets DRY_RUN=1 for --dry-run; `run_cmd` then prints each command
# (as a line starting with "+ ") and runs nothing.

# Prints an error and the hint to use --help, then exits with status 2 (usage error).
die() {
  printf 'error: %s\n' "$*" >&2
  printf 'Run %s --help for usage.\n' "${0##*/}" >&2
  exit 2
}

# Prints its arguments as one line that a POSIX shell parses back into the same
# words: plain words stay as they are, anything else is single-quoted. Used both
# to show commands and to build the command strings run on remote machines.
shell_quote() {
  local arg escaped words=()
  local quote_escape="'\\''"
  for arg in "$@"; do
    if [[ -n $arg && $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      words+=("$arg")
    elif [[ $arg =~ ^(--[A-Za-z0-9_.-]+=)(.*)$ ]]; then
      # --flag='a value' reads better than '--flag=a value' and means the same.
      escaped=${BASH_REMATCH[2]//\'/$quote_escape}
      words+=("${BASH_REMATCH[1]}'${escaped}'")
    else
      escaped=${arg//\'/$quote_escape}
      words+=("'${escaped}'")
    fi
  done
  printf '%s' "${words[*]}"
}

# Shows a command as "+ CMD" on stdout, then runs it unless DRY_RUN=1.
run_cmd() {
  printf '+ %s\n' "$(shell_quote "$@")"
  if [[ ${DRY_RUN:-0} == 1 ]]; then
    return 0
  fi
  "$@"
}

# Checks that an option that takes a value got one: require_value NAME VALUE.
require_value() {
  if [[ -z ${2-} ]]; then
    die "option $1 needs a value"
  fi
}
