# scripts/services' Docker mode, sourced by it: `scripts/services docker`.
#
# Installs docker.io and debootstrap with apt where missing, starts dockerd where no daemon
# answers (recording that it did, so `scripts/services stop` stops only that one), builds a
# Debian base image once with debootstrap (no image registry needed), then the test images on
# it, each tagged with a hash of its build files so a warm run builds nothing. Prints the
# `export SESSION_STORES_*_IMAGE=...` lines that make the tests' testcontainers fallback use
# these images instead of the upstream ones.
#
# The daemon it starts publishes container ports on 127.0.0.1 only (`--ip`), whatever a test
# asks for.

readonly DOCKER_DIR="$STATE/docker"
readonly DOCKER_SOCK=/var/run/docker.sock
readonly DOCKER_BUILD_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly BASE_IMAGE=session-stores/debian:bookworm
readonly DEBIAN_MIRROR="${SESSION_STORES_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

docker_answers() {
    timeout 10 docker info >/dev/null 2>&1
}

ensure_docker_packages() {
    local missing=() log="$DOCKER_DIR/apt.log"
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    ((${#missing[@]})) || return 0
    say "docker: installing with apt: ${missing[*]} (log: $log)"
    # Without starting the package's own dockerd (its default binds ports on every
    # interface); the one started below publishes on 127.0.0.1 only.
    apt_install "$log" "${missing[@]}"
    command -v dockerd >/dev/null || die_with_log "$log" "no dockerd after apt install"
}

start_dockerd() {
    local pidfile="$DOCKER_DIR/dockerd.pid" log="$DOCKER_DIR/dockerd.log" pid
    if docker_answers; then
        if running_pid "$pidfile" dockerd >/dev/null; then
            say "docker: daemon up ($(describe ours))"
        else
            say "docker: daemon up ($(describe foreign))"
        fi
        return 0
    fi
    # No systemd in CI containers: run it ourselves, in its own session, without our fds.
    (close_fds_and_exec nohup setsid dockerd --ip=127.0.0.1 --pidfile="$DOCKER_DIR/dockerd.own.pid") \
        </dev/null >>"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$pidfile"
    wait_for "$WAIT_SECS" docker_answers ||
        die_with_log "$log" "docker: dockerd started but does not answer on $DOCKER_SOCK"
    say "docker: daemon up ($(describe started))"
}

stop_dockerd() {
    stop_pidfile docker "$DOCKER_DIR/dockerd.pid" dockerd
}

image_exists() {
    docker image inspect "$1" >/dev/null 2>&1
}

# The base image: a minimal Debian bookworm made by debootstrap from Debian's own packages.
ensure_base_image() {
    image_exists "$BASE_IMAGE" && return 0
    local root="$DOCKER_DIR/rootfs" log="$DOCKER_DIR/debootstrap.log"
    say "docker: building $BASE_IMAGE with debootstrap, once (log: $log)"
    rm -rf "$root"
    debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" </dev/null >>"$log" 2>&1 ||
        die_with_log "$log" "debootstrap failed"
    tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >>"$log" 2>&1 ||
        die_with_log "$log" "docker import of the debootstrap tree failed"
    rm -rf "$root"
}

# The tag of an image built from directory $1: a hash of its files, so a changed Dockerfile
# (or FerretDB version) gets a new image and an unchanged one is reused.
content_tag() {
    (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
}

# build_image NAME CONTEXT_DIR: prints the image reference, building it when missing.
build_image() {
    local name=$1 context=$2 ref log="$DOCKER_DIR/build-$1.log"
    ref="session-stores/$name:$(content_tag "$context")"
    if ! image_exists "$ref"; then
        say "docker: building $ref (log: $log)"
        docker build -t "$ref" "$context" </dev/null >>"$log" 2>&1 ||
            die_with_log "$log" "docker build of $ref failed"
    fi
    printf '%s\n' "$ref"
}

cmd_docker() {
    need_root
    take_lock
    mkdir -p "$DOCKER_DIR"
    ensure_docker_packages
    start_dockerd
    ensure_base_image
    ensure_ferretdb_binary
    # FerretDB's build context holds the binary scripts/services built.
    local ferret="$DOCKER_DIR/ferretdb-context" redis postgres mongo mysql
    rm -rf "$ferret" && mkdir -p "$ferret"
    cp "$DOCKER_BUILD_DIR/ferretdb/Dockerfile" "$FERRETDB_BIN" "$ferret/"
    redis=$(build_image redis "$DOCKER_BUILD_DIR/redis")
    postgres=$(build_image postgres "$DOCKER_BUILD_DIR/postgres")
    mongo=$(build_image ferretdb "$ferret")
    mysql=$(build_image mariadb "$DOCKER_BUILD_DIR/mariadb")
    say "docker: images ready (${SECONDS}s)"
    echo "export SESSION_STORES_REDIS_IMAGE=$redis"
    echo "export SESSION_STORES_POSTGRES_IMAGE=$postgres"
    echo "export SESSION_STORES_MONGO_IMAGE=$mongo"
    echo "export SESSION_STORES_MYSQL_IMAGE=$mysql"
}

docker_status() {
    if docker_answers; then
        local ours=''
        running_pid "$DOCKER_DIR/dockerd.pid" dockerd >/dev/null && ours=" (pid $(running_pid "$DOCKER_DIR/dockerd.pid" dockerd))"
        say "docker: up$ours; $(docker ps -aq --filter label=org.testcontainers.managed-by=testcontainers | wc -l) test containers"
    else
        say "docker: down (optional: \`scripts/services docker\` starts it)"
    fi
}
