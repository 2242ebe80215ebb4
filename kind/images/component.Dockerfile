# One image per Kubernetes component that kubeadm runs as a Pod (kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy, etcd, coredns, pause), from a binary
# built from source; hack/images.sh tags each with the name kubeadm asks for. The context
# holds the one binary. PACKAGES adds Debian packages (kube-proxy needs iptables).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PACKAGES=""
RUN if [ -n "${PACKAGES}" ]; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${PACKAGES} \
      && rm -rf /var/lib/apt/lists/*; \
    fi
ARG BINARY
COPY ${BINARY} /usr/local/bin/${BINARY}
# kubeadm's manifests name the command (on PATH); CoreDNS's Deployment and the pause
# sandbox rely on the image's entrypoint.
RUN ln -s /usr/local/bin/${BINARY} /entrypoint
ENTRYPOINT ["/entrypoint"]
