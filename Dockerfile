# The gantry server image: a static gantry binary FROM scratch, no shell.
#
# This Dockerfile compiles nothing: its build context is prepared by
# scripts/image.sh, which builds the binary with scripts/build.sh (version,
# commit and date stamped) and puts it here beside the host's CA bundle:
#
#   scripts/image.sh gantry:0.14.0
#
# context file       what it is
# gantry             the static binary (scripts/build.sh: CGO_ENABLED=0)
# rootfs/            copied to / as is (modes kept):
#   etc/ssl/certs/ca-certificates.crt   CA bundle for upstream registries
#                                       and git over HTTPS
#   etc/passwd, etc/group               root and gantry (65532)
#   tmp/                                mode 1777 (builds, import spools)
#   usr/bin/busybox                     Debian's static busybox, unless
#       scripts/image.sh --no-busybox. It is no shell here (no applets are
#       installed): the server puts it in the gantry CLI image that
#       `cmd: gantry` and az steps run (internal/engine), which without it
#       cannot be built, so those steps fail.
# data/              empty: /data, owned by gantry, so that a new volume
#                    mounted there is gantry's too
#
# With a golang image at hand, a multi-stage build is the usual shape; it
# is not the default because this project builds images FROM scratch only:
#
#   FROM golang:1.26 AS build
#   WORKDIR /src
#   COPY . .
#   RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /gantry ./cmd/gantry
#   FROM scratch
#   COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
#   COPY --from=build /gantry /usr/local/bin/gantry
#   ... with /etc/passwd, /tmp, /data and busybox as below, then the lines
#   from USER on.
#
# Running it (docs/deploy.md): the server needs the Docker socket of the
# engine its steps run on, and the host network, because steps reach the
# registries on 127.0.0.1:
#
#   docker run -d --name gantry --network host \
#     -v gantry-data:/data \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -e GANTRY_ADMIN_PASSWORD=... gantry:0.14.0
#
# The server runs as uid 65532, which may use the socket only through the
# socket's group (--group-add above) or as root (--user 0).
FROM scratch

COPY rootfs/ /
COPY --chown=65532:65532 data/ /data/
COPY gantry /usr/local/bin/gantry

USER 65532:65532
ENV HOME=/data
WORKDIR /data
VOLUME /data
# The control API; each registry listens on its own port besides.
EXPOSE 7000

ENTRYPOINT ["/usr/local/bin/gantry"]
CMD ["server", "--data", "/data", "--listen", "0.0.0.0:7000"]
