//! How the CRM's port is served — TLS, mutual TLS, or plaintext only when asked for — and the
//! bearer token its gRPC calls must carry.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Status};

#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// `OPRC_CRM_PLAINTEXT=true`: no TLS (development, or TLS ends in front of the CRM).
    Plaintext,
    /// The server's certificate and key; with `client_ca`, clients must present a
    /// certificate that CA signed (mutual TLS).
    Tls {
        cert: PathBuf,
        key: PathBuf,
        client_ca: Option<PathBuf>,
    },
}

impl Transport {
    /// The server's TLS settings, read from the files now; `None` for plaintext.
    pub fn server_tls(&self) -> anyhow::Result<Option<ServerTlsConfig>> {
        let Transport::Tls {
            cert,
            key,
            client_ca,
        } = self
        else {
            return Ok(None);
        };
        let identity = Identity::from_pem(read(cert)?, read(key)?);
        let mut tls = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(Some(tls))
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Checks `authorization: Bearer <token>` on every gRPC call when a token is configured.
#[derive(Clone, Default)]
pub struct BearerCheck {
    token: Option<Arc<[u8]>>,
}

impl BearerCheck {
    /// The token in `file` (surrounding whitespace ignored), or no check without a file.
    pub fn from_file(file: Option<&Path>) -> anyhow::Result<Self> {
        let Some(file) = file else {
            return Ok(Self::default());
        };
        let token = String::from_utf8(read(file)?)
            .with_context(|| format!("{} is not UTF-8", file.display()))?;
        let token = token.trim();
        anyhow::ensure!(!token.is_empty(), "{} holds no token", file.display());
        Ok(Self {
            token: Some(token.as_bytes().into()),
        })
    }
}

impl tonic::service::Interceptor for BearerCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.token else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            None => Err(Status::unauthenticated(
                "this CRM requires a bearer token: reference it in the OCluster's credentials",
            )),
            Some(token) if same(token.as_bytes(), expected) => Ok(request),
            Some(_) => Err(Status::unauthenticated(
                "the bearer token is not the one this CRM accepts",
            )),
        }
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;

    fn call(check: &mut BearerCheck, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut request = Request::new(());
        if let Some(value) = header {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        check.call(request).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn a_configured_token_is_required_and_compared_exactly() {
        let file = std::env::temp_dir().join(format!("crm-token-{}", std::process::id()));
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut check = BearerCheck::from_file(Some(&file)).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(call(&mut check, Some("Bearer s3cret")), Ok(()));
        let unauthenticated = Err(tonic::Code::Unauthenticated);
        assert_eq!(call(&mut check, None), unauthenticated);
        assert_eq!(call(&mut check, Some("Bearer s3cre")), unauthenticated);
        assert_eq!(call(&mut check, Some("Bearer s3cret2")), unauthenticated);
        assert_eq!(call(&mut check, Some("Basic s3cret")), unauthenticated);
    }

    #[test]
    fn without_a_token_every_call_passes() {
        let mut check = BearerCheck::from_file(None).unwrap();
        assert_eq!(call(&mut check, None), Ok(()));
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let file = std::env::temp_dir().join(format!("crm-empty-token-{}", std::process::id()));
        std::fs::write(&file, " \n").unwrap();
        let error = BearerCheck::from_file(Some(&file)).err().unwrap();
        std::fs::remove_file(&file).unwrap();
        assert!(error.to_string().contains("holds no token"), "{error}");
    }
}
