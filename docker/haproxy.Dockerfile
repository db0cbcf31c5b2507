# HAProxy for docker/compose.yaml, from Debian 12's own package (HAProxy
# 2.6 LTS), for machines that cannot pull the official `haproxy` image.
# compose.yaml builds it as haproxy:2.6-debian when that tag is missing; it
# behaves like the official image where the stack relies on it: the
# configuration at /usr/local/etc/haproxy/haproxy.cfg, master-worker mode in
# the foreground, user haproxy, SIGUSR1 (soft stop) to stop. See
# docs/docker.md.
#
#   docker build -f docker/haproxy.Dockerfile -t haproxy:2.6-debian docker

FROM debian:bookworm-slim

# The package's postinst cannot start a service here (the base image's
# policy-rc.d forbids it), which is what we want: the container runs it.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        haproxy \
 && rm -rf /var/lib/apt/lists/* \
 && install -d /usr/local/etc/haproxy \
 && haproxy -v

USER haproxy
WORKDIR /var/lib/haproxy
# A soft stop: the workers finish what they are proxying, then exit.
STOPSIGNAL SIGUSR1
# -W master-worker, -db foreground with logs on stdout, as the official
# image's entrypoint runs it.
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
