//! A request to its family's handler, with the protocol's types converted
//! on the way in (`wire`) and the handler's result wrapped in a reply.

use vswitch_ctl::{AddPort, Reply, Request};

use super::attach::Attach;
use super::bridges::NewBridge;
use super::ports::{NewPort, NewUplink};
use super::{ControlError, Manager};

impl Manager {
    /// Applies one request; a failed one changed nothing.
    pub fn handle(&mut self, request: Request) -> Result<Reply, ControlError> {
        let done = |r: Result<(), ControlError>| r.map(|()| Reply::Done);
        match request {
            Request::AddBr {
                name,
                aging_secs,
                max_macs,
                subnet,
                gateway,
                ip_range,
                uplink_via,
            } => done(self.add_br(NewBridge {
                name,
                aging_secs,
                max_macs,
                subnet,
                gateway,
                ip_range,
                uplink_via,
            })),
            Request::DelBr { name } => done(self.del_br(&name)),
            Request::Transaction { requests } => self.transaction(requests),
            Request::ListBr => Ok(Reply::Bridges(self.list_br())),
            Request::AddPort(request) => done(self.add_port(new_port(request))),
            Request::DelPort { bridge, name } => done(self.del_port(&bridge, &name)),
            Request::ListPorts { bridge } => self.list_ports(&bridge).map(Reply::Ports),
            Request::Show => Ok(Reply::Show(self.show())),
            Request::FdbShow { bridge } => self.fdb_show(&bridge).map(Reply::Fdb),
            Request::PortStats { port } => self.port_stats(port.as_deref()).map(Reply::PortStats),
            Request::PmdStats => Ok(Reply::PmdStats(self.pmd_stats())),
            Request::Attach {
                bridge,
                netns,
                port_type,
                ip,
                ifname,
                mac,
                owner,
                handoff,
                default_route,
                allow_any_src,
            } => self
                .attach(Attach {
                    bridge,
                    netns,
                    kind: port_type.into(),
                    ip,
                    ifname,
                    mac,
                    owner,
                    handoff,
                    default_route: default_route.unwrap_or(true),
                    allow_any_src,
                })
                .map(Reply::Attached),
            Request::Detach { bridge, netns } => done(self.detach(&bridge, &netns)),
            Request::ListAttachments => {
                // Fresh: where runtimes have moved handoff ports since the
                // last housekeeping round.
                if self.moves_pending() {
                    self.settle_moves();
                }
                Ok(Reply::Attachments(self.list_attachments()))
            }
            Request::LinkBr { a, b } => done(self.link_br(&a, &b, true)),
            Request::UnlinkBr { a, b } => done(self.link_br(&a, &b, false)),
            Request::NeighShow { bridge } => self.neigh_show(bridge.as_deref()).map(Reply::Neigh),
            Request::AddUplink {
                bridge,
                iface,
                ip,
                prefix,
                gw,
                port_type,
                mode,
                netns,
                shared,
                mac,
            } => done(self.add_uplink(NewUplink {
                bridge,
                iface,
                ip,
                prefix,
                gw,
                kind: port_type.into(),
                mode: mode.unwrap_or_default().into(),
                netns,
                shared,
                mac,
            })),
            Request::DelUplink { bridge } => done(self.del_uplink(&bridge)),
            Request::SetNat { bridge, masquerade } => done(self.set_nat(&bridge, masquerade)),
            Request::Publish { bridge, rule } => done(self.publish_port(&bridge, rule.into())),
            Request::Unpublish { bridge, proto, port } => done(self.unpublish_port(&bridge, proto.into(), port)),
            Request::ListPublished { bridge } => self.list_published(&bridge).map(Reply::Published),
            Request::CtShow { bridge } => self.ct_show(bridge.as_deref()).map(Reply::Conns),
            Request::CtFlush { bridge, addr } => self.ct_flush(bridge.as_deref(), addr).map(Reply::Flushed),
            Request::CtStats => Ok(Reply::CtStats(self.ct_stats())),
            Request::CtSave => self.save_conntrack().map(Reply::CtSaved),
            Request::CaptureStart {
                port,
                count,
                direction,
                filter,
            } => done(self.capture_start(&port, count, direction, filter.as_deref())),
            Request::CaptureRead { port } => self.capture_read(&port).map(Reply::Captured),
            Request::CaptureStop { port } => done(self.capture_stop(&port)),
            Request::TraceStart { port, count } => done(self.trace_start(&port, count)),
            Request::TraceRead { port } => self.trace_read(&port).map(Reply::Traced),
            Request::TraceStop { port } => done(self.trace_stop(&port)),
            Request::AddVxlan(request) => done(self.add_vxlan(request)),
            Request::DelVxlan { bridge } => done(self.del_vxlan(&bridge)),
            Request::AddVtep { bridge, ip } => done(self.add_vtep(&bridge, ip)),
            Request::DelVtep { bridge, ip } => done(self.del_vtep(&bridge, ip)),
            Request::FdbAdd { bridge, mac, vtep } => done(self.fdb_add(&bridge, mac, vtep)),
            Request::FdbDel { bridge, mac } => done(self.fdb_del(&bridge, mac)),
            Request::VtepShow { bridge } => self.vtep_show(bridge.as_deref()).map(Reply::Vteps),
            // Answered by the cluster agent when vswitchd runs one.
            Request::ClusterStatus => Ok(Reply::Cluster(None)),
            Request::NetCreate(_)
            | Request::NetDelete { .. }
            | Request::NetList
            | Request::ClusterLeave
            | Request::ClusterJoin => Err(ControlError::NoCluster),
        }
    }
}

/// `add-port` in the switch's terms.
fn new_port(r: AddPort) -> NewPort {
    NewPort {
        kind: r.port_type.into(),
        mode: r.mode.map(Into::into),
        bridge: r.bridge,
        name: r.name,
        netns: r.netns,
        ifname: r.ifname,
        mac: r.mac,
        queue: r.queue,
        iface: r.iface,
    }
}
