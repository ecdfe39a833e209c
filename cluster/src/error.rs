//! What the cluster agent refuses or fails at, in words a user can act on.

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::time::timeout;

use vswitch_ctl::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("network name '{0}' is not valid (1-32 characters: letters, digits, '.', '-', '_')")]
    BadName(String),
    #[error("VNI {0} is out of range (1-16777215)")]
    BadVni(u32),
    #[error("the VXLAN port must not be 0")]
    BadPort,
    #[error(transparent)]
    BadSubnet(#[from] vswitch_ctl::NetParseError),
    #[error(
        "host prefix /{host_prefix} does not fit subnet {subnet}: it must be longer than the subnet's and at most /30"
    )]
    BadHostPrefix { host_prefix: u8, subnet: Ipv4Net },
    #[error("network '{0}' already exists")]
    NetExists(String),
    #[error("no network '{0}' in the cluster")]
    NoNet(String),
    #[error("VNI {vni} is already used by network '{other}'")]
    VniInUse { vni: u32, other: String },
    #[error("subnet {subnet} overlaps {existing} of network '{other}'")]
    SubnetOverlaps {
        subnet: Ipv4Net,
        existing: Ipv4Net,
        other: String,
    },
    #[error("the cluster is unreachable: {0}")]
    Unreachable(String),
    #[error("this host has left the cluster (vsctl cluster-join to come back)")]
    Left,
    #[error("not a cluster request: {0}")]
    NotCluster(String),
    #[error("the cluster agent is not running")]
    AgentGone,
    #[error("another host changed the networks at the same time; try again")]
    Contended,
    #[error("no free slice of {subnet} left for this host")]
    NoFreeSlice { subnet: Ipv4Net },
    #[error("the VTEP address {0} is used by another node")]
    VtepClash(Ipv4Addr),
    /// A policy change the cluster does not take (the message says why).
    #[error("{0}")]
    PolicyRefused(String),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd connection: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("etcd did not answer within {0} ms")]
    Timeout(u64),
}

/// How long one etcd call may take before it counts as failed (and the
/// agent gives its session up).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs an etcd call with the call timeout.
pub(crate) async fn within<T>(
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ClusterError> {
    match timeout(CALL_TIMEOUT, fut).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ClusterError::Timeout(CALL_TIMEOUT.as_millis() as u64)),
    }
}
