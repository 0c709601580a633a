# Sourced (bash) at the start of every job of stagegate's GitLab CI/CD component
# (templates/gitlab/template.yml) and of the child pipeline `stagegate plan --format
# gitlab-pipeline` writes, from a checkout of stagegate's source at the ref the pipeline
# pins: `. scripts/gitlab-ci.sh ROLE`. It
#   - installs the released binary matching that ref (checksum verified; a source build only
#     when there is no such release), by scripts/install.sh as the GitHub Action does, and
#     puts it on PATH;
#   - gives the stage branches of the remote `origin` as local branches;
#   - names the commits stagegate makes (STAGEGATE_GIT_NAME, STAGEGATE_GIT_EMAIL);
#   - maps the CI job's registry credentials (CI_REGISTRY_USER, CI_REGISTRY_PASSWORD — the
#     job token) onto the OCI store's (STAGEGATE_OCI_USERNAME, STAGEGATE_OCI_PASSWORD),
#     unless the job has its own;
#   - by ROLE: `run` (a job that runs candidate code) drops every token and key stagegate
#     could be given (STAGEGATE_GITLAB_TOKEN, STAGEGATE_SIGNING_KEY) before anything runs,
#     and `cycle` (the one job of the cycle mode, which runs candidate code too) the key;
#     `plan`, `record` and `promote` (no candidate code) push with STAGEGATE_GITLAB_TOKEN
#     when it is set, passed to git in the environment (never written to .git/config); only
#     `promote` (and `cycle`, the one job of the cycle mode) keeps the token for stagegate
#     to reach GitLab's API (with CI_API_V4_URL, CI_PROJECT_ID, CI_PROJECT_PATH,
#     CI_SERVER_URL).
#
# Environment: STAGEGATE_SOURCE and STAGEGATE_REF (where stagegate's source is and at which
# ref: a release tag, the commit of a release, or a floating major tag such as v0),
# STAGEGATE_RELEASES (where its releases are downloaded from; default: the GitHub releases
# of STAGEGATE_SOURCE), and GitLab's predefined variables.

sg_role="${1:?usage: . scripts/gitlab-ci.sh run|record|promote|cycle|plan}"
sg_here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

case "$sg_role" in
    # Candidate code runs here, and may become root: nothing it could steal.
    run) unset STAGEGATE_GITLAB_TOKEN STAGEGATE_SIGNING_KEY ;;
    # One job that runs candidate code and pushes (as stagegate-cycle.yml on GitHub): it
    # never signs; with `trust:`, use the matrix mode.
    cycle) unset STAGEGATE_SIGNING_KEY ;;
    plan | record | promote) ;;
    *) echo "gitlab-ci.sh: unknown role $sg_role" >&2; return 2 ;;
esac

STAGEGATE_ACTION_PATH="$sg_here" \
    STAGEGATE_REF="${STAGEGATE_REF:-}" \
    STAGEGATE_RELEASES="${STAGEGATE_RELEASES:-${STAGEGATE_SOURCE%.git}/releases/download}" \
    STAGEGATE_INSTALL_DIR="$sg_here/.install" \
    bash "$sg_here/scripts/install.sh" || return
export PATH="$sg_here/.install/bin:$PATH"

# The stage branches: a CI checkout has only the pipeline's own. Mirror the remote's other
# branches, never moving one that exists.
git fetch -q origin '+refs/heads/*:refs/remotes/origin/*' || return
git for-each-ref --format='%(refname:lstrip=3)' refs/remotes/origin/ |
    while read -r sg_branch; do
        if [ "$sg_branch" != HEAD ] && ! git show-ref --verify --quiet "refs/heads/$sg_branch"; then
            git update-ref "refs/heads/$sg_branch" "refs/remotes/origin/$sg_branch"
        fi
    done

export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-${STAGEGATE_GIT_NAME:-stagegate}}"
export GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-${STAGEGATE_GIT_EMAIL:-stagegate@${CI_SERVER_HOST:-localhost}}}"
export GIT_COMMITTER_NAME="${GIT_COMMITTER_NAME:-$GIT_AUTHOR_NAME}"
export GIT_COMMITTER_EMAIL="${GIT_COMMITTER_EMAIL:-$GIT_AUTHOR_EMAIL}"

# The store in GitLab's container registry, with the job's own registry credentials.
if [ -z "${STAGEGATE_OCI_TOKEN:-}" ] && [ -z "${STAGEGATE_OCI_USERNAME:-}" ] &&
    [ -n "${CI_REGISTRY_USER:-}" ]; then
    export STAGEGATE_OCI_USERNAME="$CI_REGISTRY_USER"
    export STAGEGATE_OCI_PASSWORD="${CI_REGISTRY_PASSWORD:-${CI_JOB_TOKEN:-}}"
fi

# Pushes: the job token cannot push to a repository, so the jobs that push and run no
# candidate code use the token given for it, for this job's git commands only. The empty
# first value drops a header an earlier configuration left.
if [ "$sg_role" != run ] && [ -n "${STAGEGATE_GITLAB_TOKEN:-}" ] && [ -n "${CI_SERVER_URL:-}" ]; then
    sg_basic="$(printf 'oauth2:%s' "$STAGEGATE_GITLAB_TOKEN" | base64 | tr -d '\n')"
    export GIT_CONFIG_COUNT=2
    export GIT_CONFIG_KEY_0="http.$CI_SERVER_URL/.extraheader" GIT_CONFIG_VALUE_0=""
    export GIT_CONFIG_KEY_1="http.$CI_SERVER_URL/.extraheader"
    export GIT_CONFIG_VALUE_1="AUTHORIZATION: basic $sg_basic"
    unset sg_basic
fi
# Only the promoting jobs keep the token for GitLab's API.
if [ "$sg_role" != promote ] && [ "$sg_role" != cycle ]; then
    unset STAGEGATE_GITLAB_TOKEN
fi
unset sg_role sg_here sg_branch
