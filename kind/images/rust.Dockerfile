# A Rust build image made from this machine's own toolchain, for building the project's
# Dockerfile where the public rust image cannot be pulled. The context (hack/images.sh):
# rust/ holds the toolchain's bin/ and lib/; ca-certificates/ the certificate authorities
# this machine adds to Debian's (/usr/local/share/ca-certificates), so that cargo reaches
# crates.io through the same TLS-inspecting proxy, if there is one. Laid out like the public
# image: cargo's home in /usr/local/cargo.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY rust/ /usr/local/rust/
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN rustc --version && cargo --version
