//! A request to the one function that handles it, the result wrapped in a
//! reply. Each request arrives as its own struct (`vswitch_ctl::req`); a
//! handler converts what it needs into the switch's own types.

use vswitch_ctl::{Reply, Request};

use super::{ControlError, Manager};

impl Manager {
    /// Applies one request; a failed one changed nothing.
    pub fn handle(&mut self, request: Request) -> Result<Reply, ControlError> {
        let done = |r: Result<(), ControlError>| r.map(|()| Reply::Done);
        if self.nothing_to_do(&request) {
            return Ok(Reply::Done);
        }
        match request {
            Request::AddBr(r) => done(self.add_br(r)),
            Request::DelBr(r) => done(self.del_br(&r.name)),
            Request::Transaction(r) => self.transaction(r.requests),
            Request::ListBr => Ok(Reply::Bridges(self.list_br())),
            Request::SetBridge(r) => done(self.set_bridge(r)),
            Request::AddPort(r) => done(self.add_port(r)),
            Request::DelPort(r) => done(self.del_port(&r.bridge, &r.name)),
            Request::ListPorts(r) => self.list_ports(r.bridge.as_deref()).map(Reply::Ports),
            Request::Show => Ok(Reply::Show(self.show())),
            Request::FdbShow(r) => self.fdb_show(r.bridge.as_deref()).map(Reply::Fdb),
            Request::PortStats(r) => self.port_stats(r.port.as_deref()).map(Reply::PortStats),
            Request::PmdStats => Ok(Reply::PmdStats(self.pmd_stats())),
            Request::Attach(r) => self.attach(r).map(Reply::Attached),
            Request::Detach(r) => done(self.detach(&r.bridge, &r.netns)),
            Request::ListAttachments => {
                // Fresh: where runtimes have moved handoff ports since the
                // last housekeeping round.
                if self.moves_pending() {
                    self.settle_moves();
                }
                Ok(Reply::Attachments(self.list_attachments()))
            }
            Request::Label(r) => done(self.label(r)),
            Request::LabelNamespace(r) => done(self.label_namespace(r)),
            Request::ApplyPolicies(r) => self.apply_policies(r).map(Reply::Applied),
            Request::DeletePolicies(r) => self.delete_policies(r).map(Reply::Deleted),
            Request::ListPolicies => Ok(Reply::Policies(self.list_policies())),
            Request::ClusterPolicies(r) => done(self.cluster_policies(r)),
            Request::ObserveRead(r) => Ok(Reply::Flows(self.observe_read(&r))),
            Request::CheckPolicy(r) => self.check_policy(&r).map(|c| Reply::PolicyChecked(Box::new(c))),
            Request::LinkBr(r) => done(self.link_br(&r.a, &r.b, true)),
            Request::UnlinkBr(r) => done(self.link_br(&r.a, &r.b, false)),
            Request::NeighShow(r) => self.neigh_show(r.bridge.as_deref()).map(Reply::Neigh),
            Request::AddUplink(r) => done(self.add_uplink(r)),
            Request::DelUplink(r) => done(self.del_uplink(&r.bridge)),
            Request::SetNat(r) => done(self.set_nat(&r.bridge, r.masquerade)),
            Request::Publish(r) => done(self.publish_port(&r.bridge, r.rule.into())),
            Request::Unpublish(r) => done(self.unpublish_port(&r.bridge, r.proto.into(), r.port)),
            Request::ListPublished(r) => self.list_published(&r.bridge).map(Reply::Published),
            Request::CtShow(r) => self.ct_show(r.bridge.as_deref()).map(Reply::Conns),
            Request::CtFlush(r) => self.ct_flush(r.bridge.as_deref(), r.addr).map(Reply::Flushed),
            Request::CtStats => Ok(Reply::CtStats(self.ct_stats())),
            Request::ControlStats => Ok(Reply::ControlStats(self.control_stats())),
            Request::CtSave => self.save_conntrack().map(Reply::CtSaved),
            Request::CaptureStart(r) => done(self.capture_start(r)),
            Request::CaptureRead(r) => self.capture_read(&r.port).map(Reply::Captured),
            Request::CaptureStop(r) => done(self.capture_stop(&r.port)),
            Request::TraceStart(r) => done(self.trace_start(&r.port, r.count)),
            Request::TraceRead(r) => self.trace_read(&r.port).map(Reply::Traced),
            Request::TraceStop(r) => done(self.trace_stop(&r.port)),
            Request::AddVxlan(r) => done(self.add_vxlan(r)),
            Request::DelVxlan(r) => done(self.del_vxlan(&r.bridge)),
            Request::AddVtep(r) => done(self.add_vtep(&r.bridge, r.ip)),
            Request::DelVtep(r) => done(self.del_vtep(&r.bridge, r.ip)),
            Request::FdbAdd(r) => done(self.fdb_add(&r.bridge, r.mac, r.vtep)),
            Request::FdbDel(r) => done(self.fdb_del(&r.bridge, r.mac)),
            Request::VtepShow(r) => self.vtep_show(r.bridge.as_deref()).map(Reply::Vteps),
            // Answered by the cluster agent when vswitchd runs one.
            Request::ClusterStatus => Ok(Reply::Cluster(None)),
            Request::NetCreate(_)
            | Request::NetDelete(_)
            | Request::NetList
            | Request::ClusterLeave
            | Request::ClusterJoin => Err(ControlError::NoCluster),
        }
    }
}
