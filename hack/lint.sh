#!/usr/bin/env bash
# Formatting, clippy (warnings are errors), shell syntax, and generated files in sync.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The kind tests are behind a feature (only `just e2e-kind` builds them).
cargo clippy -p oaas-e2e --features kind --all-targets --quiet -- -D warnings
log "bash -n hack/*.sh hack/docker/* kind/*.sh"
for f in hack/*.sh hack/docker/* kind/*.sh; do bash -n "$f"; done
