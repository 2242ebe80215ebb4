#!/usr/bin/env bash
# Shell scripts (syntax, shellcheck), formatting, and clippy (warnings are errors).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# Every shell script in the repository, found by its #! line (hack/*.sh, hack/docker/*,
# kind/*.sh, .ci/run...), build output and caches aside. Settings: .shellcheckrc.
scripts=()
while IFS= read -r f; do
  first=""
  IFS= read -r first <"$f" || true
  if [[ $first =~ ^#!.*(/|[[:space:]])(ba|da|k)?sh([[:space:]]|$) ]]; then scripts+=("${f#./}"); fi
done < <(find . \( -name .git -o -name target -o -name .hypothesis -o -name .schemathesis \) -prune \
  -o -type f -print | sort)
((${#scripts[@]} > 0)) || die "no shell scripts found"
log "bash -n and shellcheck: ${scripts[*]}"
for f in "${scripts[@]}"; do bash -n "$f"; done
command -v shellcheck >/dev/null || die "shellcheck is missing: run hack/bootstrap.sh"
shellcheck "${scripts[@]}"

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The kind tests are behind a feature (only `just e2e-kind` builds them).
cargo clippy -p oaas-e2e --features kind --all-targets --quiet -- -D warnings
