# Sourced by pyspark.sh and pyspark-connect.sh: a pip package in a venv of its own, installed
# once and checked on every later run. The caller defines say, fail and the check.

# venv_install VENV SPEC CHECK SIZE: unless VENV is complete and the function CHECK succeeds,
# (re)creates VENV and runs `pip install SPEC` there (SIZE: what the log says it weighs), then
# requires CHECK. Parallel callers wait on a lock beside VENV (held until the caller exits) and
# then find the install done.
venv_install() {
  local venv=$1 spec=$2 check=$3 size=$4
  local lock
  lock=$(dirname "$venv")/.$(basename "$venv").lock
  mkdir -p "$(dirname "$venv")"
  exec 9>"$lock"
  flock 9 || fail "locking $lock"
  if [ -f "$venv/.complete" ] && "$check"; then
    return 0
  fi
  rm -rf "$venv"
  say "creating venv $venv"
  python3 -m venv "$venv" >&2 || fail "python3 -m venv $venv (is python3-venv installed?)"
  say "pip install $spec ($size, once)"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
    "$spec" >&2 || fail "pip install $spec"
  "$check" || fail "$spec in $venv: $check failed"
  touch "$venv/.complete"
  say "installed: $venv"
}
