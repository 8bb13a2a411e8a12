# Sourced by the cluster scripts: apt_install PKG..., run once per missing set, `apt-get update`
# at most once per script run (set apt_updated=0 to force another, e.g. after adding a source).
# The caller defines say, fail and $cache (the log goes to $cache/apt.log); $apt_root_hint is
# added to the error when not root.
apt_updated=0
apt_install() {
  [ "$(id -u)" = 0 ] || fail "need Debian packages ($*) but not root${apt_root_hint:+; $apt_root_hint}"
  if [ $apt_updated = 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$cache/apt.log" 2>&1 || fail "apt-get update (see $cache/apt.log)"
    apt_updated=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$cache/apt.log" 2>&1 </dev/null \
    || fail "apt-get install $* (see $cache/apt.log)"
}
