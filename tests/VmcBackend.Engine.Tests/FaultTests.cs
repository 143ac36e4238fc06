using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Faults;
using VmcBackend.Engine.Handshake;
using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.Engine.Tests;

/// <summary>
/// Each fault of the catalogue against the simulated partition (which follows the driver decision
/// by decision): what reaches the guest, how the driver reacts, and that the engine's own
/// accounting stays consistent. A reaction that is a driver bug is an expected failure (XFAIL),
/// quoted; the boot scenarios (scripts/boot-test.sh faults) show the same with the real driver.
/// </summary>
public class FaultTests
{
    private static Harness H(string plan, bool probe = true, DriverVersion version = DriverVersion.Linux61, int pageSize = 65536,
        VmcLimits? limits = null, int hmcs = 1)
        => new(faults: FaultPlan.Parse(plan), probe: probe, version: version, pageSize: pageSize, limits: limits, hmcs: hmcs);

    private static byte[] HmcId(string id) => System.Text.Encoding.ASCII.GetBytes(id.PadRight(32, '\0'));

    /// <summary>QEMU reconnects after losing the back-end: the same factory (and plan) serves the new connection.</summary>
    private static void Reconnect(Harness h)
    {
        Assert.That(h.Device.Backend, Is.Null, "the back-end was lost");
        h.Device.Connect(h.Rig.Factory);
        h.Client.Settle();
    }

    private static void AssertEcho(Harness h, string id = "after")
    {
        var g = h.OpenRouterSession(id);
        Assert.That(h.Client.Call(g, RouterOpcode.Echo, 7, [1, 2, 3], out var resp).ReturnCode, Is.EqualTo(0));
        Assert.That(resp[32..], Is.EqualTo(new byte[] { 1, 2, 3 }));
        Assert.That(h.Partition.Close(g), Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Engine.CheckConsistency(), Is.Null);
    }

    private static byte[] Echo(uint token) => RouterClient.Request(RouterOpcode.Echo, token, [9, 9, 9]);

    // ------------------------------------------------------------------ transport event

    [Test]
    public void TransportEventAfterACloseIsTrap3()
    {
        var h = H("transport-event when=close");
        var f = h.OpenRouterSession();
        Assert.That(h.Partition.Close(f), Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Device.Failures.Single().Reason, Is.EqualTo(ChannelFailure.InternalError));
        Assert.That(h.Device.Failures[0].Text, Does.Contain("fault injection: transport-event when=close"));
        Assert.That(h.Partition.TransportEvents, Is.EqualTo(1));
        Assert.That(h.Partition.Violations.Single(), Does.StartWith("trap 3"));
        Reconnect(h);
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready), "the channel recovers");
        var g = h.OpenRouterSession("second");
        Assert.That(h.Partition.Close(g), Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Device.Failures, Has.Count.EqualTo(1), "spent: the new connection's close fires nothing");
        Assert.That(h.Faults!.History.Single().Rule, Is.EqualTo("transport-event when=close"));
        DriverBug.ExpectedFailure("trap 3", "ibmvmc_close(): \"kfree_sensitive(session);\" leaves hmc->file_session set; the transport event's ibmvmc_return_hmc(hmc, true) does \"session->valid = 0;\"");
    }

    [Test]
    public void TransportEventWithASessionOpenGivesTheReaderEbadfd()
    {
        var h = H("transport-event when=open after-ms=20");
        var f = h.Client.OpenSession();
        Assert.That(h.Device.Failures, Is.Empty, "not before after-ms");
        Assert.That(h.Engine.HasPendingOutput, Is.True, "the engine asks to be polled for its timed fault");
        h.Wait(TimeSpan.FromMilliseconds(20));
        Assert.That(h.Device.Failures, Has.Count.EqualTo(1));
        Assert.That(h.Partition.Read(f, new byte[64]), Is.EqualTo(-Errno.EBADFD));
        Reconnect(h);
        AssertEcho(h);
        Assert.That(h.Partition.Violations, Is.Empty);
    }

    // ------------------------------------------------------------------ drop and delay

    [Test]
    public void ADroppedCapRespLeavesTheDriverInCapabilitiesUntilATransportEvent()
    {
        var h = H("drop type=cap-resp");
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Capabilities));
        Assert.That(h.Engine.State, Is.EqualTo(AdapterState.Ready), "the engine answered; the answer was lost");
        Assert.That(h.Partition.SetHmcId(h.Partition.Open(), HmcId("x")), Is.EqualTo(-Errno.EAGAIN));
        // vmcctl inject transport-event: the control plane adds the rule and wakes the engine.
        h.Faults!.Add(FaultRule.Parse("transport-event when=now"));
        Assert.That(h.Engine.HasPendingOutput, Is.True);
        h.Engine.Poll();
        h.Client.Settle();
        Reconnect(h);
        AssertEcho(h);
    }

    [Test]
    public void ADelayedCapRespIsEagainUntilItArrives()
    {
        var h = H("delay type=cap-resp ms=100");
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Capabilities));
        Assert.That(h.Partition.SetHmcId(h.Partition.Open(), HmcId("x")), Is.EqualTo(-Errno.EAGAIN));
        h.Wait(TimeSpan.FromMilliseconds(99));
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Capabilities));
        h.Wait(TimeSpan.FromMilliseconds(1));
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
        AssertEcho(h);
        h.AssertHealthy();
    }

    [Test]
    public void ADroppedOpenRespLeavesWriteEbusyUntilClose()
    {
        var h = H("drop type=open-resp");
        var f = h.Partition.Open();
        Assert.That(h.Partition.SetHmcId(f, HmcId("x")), Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Partition.HmcState(0), Is.EqualTo(DriverHmcState.Opening));
        Assert.That(h.Partition.Write(f, Echo(1)), Is.EqualTo(-Errno.EBUSY));
        Assert.That(h.Partition.Close(f), Is.EqualTo(0), "close() in opening sends CLOSE");
        h.Client.Settle();
        AssertEcho(h);
        h.AssertHealthy();
    }

    // ------------------------------------------------------------------ REM_BUF

    [Test]
    public void RemBufDownToTheLastBufferStallsWritesUntilClose()
    {
        var h = H("rem-buf when=open buffers=all last=yes");
        var f = h.Client.OpenSession();
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(0));
        Assert.That(h.Partition.Violations.Single(), Does.StartWith("REM_BUF took the partition's last buffer"), "the hypervisor's interface error, which the driver does not refuse");
        Assert.That(h.Partition.Write(f, Echo(1)), Is.EqualTo(-Errno.EBUSY));
        Assert.That(h.Engine.CheckConsistency(), Is.Null);
        Assert.That(h.Engine.Counters.BuffersRemoved, Is.EqualTo(32));
        Assert.That(h.Partition.Close(f), Is.EqualTo(0));
        h.Client.Settle();
        AssertEcho(h);
    }

    [Test]
    public void RemBufWithoutLastLeavesOneBufferAndEchoStillWorks()
    {
        var h = H("rem-buf when=open after-ms=10 buffers=all");
        var f = h.Client.OpenSession();
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(32), "the engine asks only for buffers whose ADD_BUF was answered");
        h.Wait(TimeSpan.FromMilliseconds(10));
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(1));
        Assert.That(h.Client.Call(f, RouterOpcode.ExchangeOps, 1, default, out _).ReturnCode, Is.EqualTo(0));
        for (uint t = 2; t <= 4; t++)
            Assert.That(h.Client.Call(f, RouterOpcode.Echo, t, [5], out _).ReturnCode, Is.EqualTo(0), "one buffer goes back and forth");
        h.AssertHealthy();
    }

    [Test]
    public void InjectedRemBufActsOnTheNextCall()
    {
        var h = H("");
        h.Client.OpenSession();
        h.Faults!.Add(FaultRule.Parse("rem-buf when=now"));
        h.Engine.Poll();
        h.Client.Settle();
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(31));
        Assert.That(h.Faults.History.Single().Detail, Does.StartWith("1 REM_BUF sent on HMC 0"));
        h.AssertHealthy();
    }

    // ------------------------------------------------------------------ CAP_RESP

    [TestCase("max-hmc=0", -Errno.ENOBUFS)]
    [TestCase("pool=0", -Errno.ENOBUFS)]
    public void UnusableCapRespLimitsAreTrap1(string values, int sethmcid)
    {
        var h = H("cap-resp " + values);
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready), "the driver takes them");
        Assert.That(h.Partition.Violations, Has.Some.StartsWith("trap 1"));
        Assert.That(h.Partition.SetHmcId(h.Partition.Open(), HmcId("x")), Is.EqualTo(sethmcid));
        DriverBug.ExpectedFailure("trap 1", $"ibmvmc_process_capabilities() takes CAP_RESP {values}: \"ibmvmc.max_hmc_index = min_t(u8, ibmvmc_max_hmcs, crq->max_hmc) - 1;\" and the limits are never validated");
    }

    [Test]
    public void CapRespMtu0IsTrap1()
    {
        var h = H("cap-resp mtu=0");
        Assert.That(h.Partition.MaxMtu, Is.EqualTo(0));
        Assert.That(h.Partition.Violations, Has.Some.StartsWith("trap 1"));
        DriverBug.ExpectedFailure("trap 1", "CAP_RESP MTU 0: \"ibmvmc.max_mtu = min_t(u32, ibmvmc_max_mtu, be32_to_cpu(crq->max_mtu));\" makes every buffer 0 bytes");
    }

    [Test]
    public void CapRespOfAnotherMajorVersionFailsTheAdapterUntilATransportEvent()
    {
        var h = H("cap-resp version=0x0200");
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Failed));
        Assert.That(h.Partition.SetHmcId(h.Partition.Open(), HmcId("x")), Is.EqualTo(-Errno.EIO));
        Assert.That(h.Partition.Violations, Is.Empty, "a correct refusal");
        // A transport event is the way back (ibmvmc_reset(adapter, true) sets crqinit whatever the state).
        h.Faults!.Add(FaultRule.Parse("transport-event when=now"));
        h.Engine.Poll();
        h.Client.Settle();
        Reconnect(h);
        AssertEcho(h);
    }

    [Test]
    public void CapRespStatusIsIgnoredByTheDriver()
    {
        var h = H("cap-resp status=general-failure");
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready), "ibmvmc_process_capabilities reads only the version");
        AssertEcho(h);
    }

    // ------------------------------------------------------------------ OPEN_RESP, CLOSE_RESP

    [Test]
    public void OpenRefusedWithAStatusIsEioAndANewOpenWorks()
    {
        var h = H("open-resp status=interface-failure");
        var f = h.Partition.Open();
        Assert.That(h.Partition.SetHmcId(f, HmcId("x")), Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Partition.HmcState(0), Is.EqualTo(DriverHmcState.Free));
        Assert.That(h.Partition.Write(f, Echo(1)), Is.EqualTo(-Errno.EIO));
        Assert.That(h.Partition.SetHmcId(f, HmcId("x")), Is.EqualTo(-Errno.EIO), "the file keeps its freed HMC");
        Assert.That(h.Partition.Close(f), Is.EqualTo(0));
        AssertEcho(h);
        h.AssertHealthy();
    }

    [Test]
    public void OpenRespNamingABadBufferFailsTheHmcUntilClose()
    {
        var h = H("open-resp buffer=65535");
        var f = h.Partition.Open();
        Assert.That(h.Partition.SetHmcId(f, HmcId("x")), Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Partition.HmcState(0), Is.EqualTo(DriverHmcState.Failed));
        Assert.That(h.Partition.Write(f, Echo(1)), Is.EqualTo(-Errno.EIO));
        Assert.That(h.Partition.Close(f), Is.EqualTo(0), "close() in failed sends CLOSE");
        h.Client.Settle();
        AssertEcho(h);
        h.AssertHealthy();
    }

    [Test]
    public void CloseRespWithAStatusMakesTheDriverResetItself()
    {
        var h = H("close-resp status=4");
        var f = h.OpenRouterSession();
        Assert.That(h.Partition.Close(f), Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Partition.Resets, Is.EqualTo(1), "H_FREE_CRQ, H_REG_CRQ, init");
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
        AssertEcho(h);
        h.AssertHealthy();
    }

    // ------------------------------------------------------------------ SIGNAL length

    [Test]
    public void SignalAboveTheMtu([Values] DriverVersion version, [Values] bool copyAllowed)
    {
        var h = H("signal-length length=mtu+1" + (copyAllowed ? " copy=allow" : ""), version: version, pageSize: version == DriverVersion.Linux61 ? 65536 : 4096);
        var f = h.Client.OpenSession();
        Assert.That(h.Partition.Write(f, Echo(1)), Is.EqualTo(Echo(1).Length));
        h.Client.Settle();
        int read = h.Partition.Read(f, new byte[4096]);
        if (version == DriverVersion.Linux612)
        {
            Assert.That(read, Is.EqualTo(-Errno.EAGAIN), "6.12 drops it: \"msg_len exceeds buffer size\"");
            Assert.That(h.Partition.Violations, Is.Empty);
            Assert.That(h.Engine.Counters.RdmaFailures, Is.EqualTo(0), "no RDMA attempted");
            return;
        }
        Assert.That(h.Partition.Violations.Single(), Does.StartWith("trap 2"));
        if (copyAllowed)
        {
            Assert.That(read, Is.EqualTo(4096), "the claimed length, cut to the caller's count");
            Assert.That(h.Engine.Counters.RdmaFailures, Is.EqualTo(0));
        }
        else
        {
            Assert.That(read, Is.EqualTo(-Errno.EAGAIN), "the engine refused the RDMA past the buffer: the message is lost");
            Assert.That(h.Engine.Counters.RdmaFailures, Is.EqualTo(1));
            Assert.That(h.Partition.RdmaFailures, Is.EqualTo(1), "and the buffer leaked (trap 5)");
        }
        DriverBug.ExpectedFailure("trap 2", "6.1 ibmvmc_recv_msg(): \"rc = h_copy_rdma(msg_len, ...)\" with msg_len from the SIGNAL, never compared with buffer->size");
    }

    // ------------------------------------------------------------------ H_COPY_RDMA

    [Test]
    public void FailedOpenRdmaThenCloseLeaksTheHmc()
    {
        var h = H("rdma rc=hardware dir=to-hv");
        var f = h.Partition.Open();
        Assert.That(h.Partition.SetHmcId(f, HmcId("x")), Is.EqualTo(-Errno.EIO));
        Assert.That(h.Partition.HmcState(0), Is.EqualTo(DriverHmcState.Initial));
        Assert.That(h.Partition.Close(f), Is.EqualTo(0), "close() in initial sends nothing");
        Assert.That(h.Partition.SetHmcId(h.Partition.Open(), HmcId("y")), Is.EqualTo(-Errno.EBUSY), "the only HMC stays reserved");
        // A transport event frees it again, through the dangling file session (trap 3 as well).
        h.Faults!.Add(FaultRule.Parse("transport-event when=now"));
        h.Engine.Poll();
        h.Client.Settle();
        Reconnect(h);
        AssertEcho(h);
        Assert.That(h.Partition.Violations.Single(), Does.StartWith("trap 3"));
        DriverBug.ExpectedFailure("trap 4", "ibmvmc_ioctl_sethmcid(): a failed ibmvmc_send_open() leaves the HMC in ibmhmc_state_initial; ibmvmc_close() sends CLOSE only from opening and never returns the HMC");
    }

    [Test]
    public void FailedWriteRdma([Values] DriverVersion version)
    {
        var h = H("rdma rc=hardware dir=to-hv when=open", version: version);
        var f = h.Client.OpenSession();
        int writable = h.Partition.WritableBufferCount(0);
        int w = h.Partition.Write(f, Echo(1));
        h.Client.Settle();
        Assert.That(h.Engine.Counters.MessagesIn, Is.EqualTo(0), "no SIGNAL");
        if (version == DriverVersion.Linux612)
        {
            Assert.That(w, Is.EqualTo(-Errno.EIO));
            Assert.That(h.Partition.WritableBufferCount(0), Is.EqualTo(writable), "6.12 frees the buffer");
            Assert.That(h.Client.Transact(f, Echo(2)), Has.Length.GreaterThanOrEqualTo(32), "recovered: the next write reaches the router");
            return;
        }
        Assert.That(w, Is.EqualTo(Echo(1).Length), "6.1 reports success");
        Assert.That(h.Partition.WritableBufferCount(0), Is.EqualTo(writable - 1), "and leaks the buffer");
        DriverBug.ExpectedFailure("trap 5", "6.1 ibmvmc_write(): \"ibmvmc_send_msg(adapter, vmc_buffer, hmc, count);\" ignores the failed h_copy_rdma: write() returns count, the message is lost, the buffer never comes back");
    }

    [Test]
    public void FailedReceiveRdmaLosesTheMessageAndLeaksTheBuffer([Values] DriverVersion version)
    {
        var h = H("rdma rc=hardware dir=to-guest", version: version);
        var f = h.Client.OpenSession();
        Assert.That(h.Partition.Write(f, Echo(1)), Is.EqualTo(Echo(1).Length));
        h.Client.Settle();
        Assert.That(h.Partition.Read(f, new byte[4096]), Is.EqualTo(-Errno.EAGAIN));
        Assert.That(h.Partition.RdmaFailures, Is.EqualTo(1));
        Assert.That(h.Engine.Counters.RdmaFailures, Is.EqualTo(1));
        Assert.That(h.Engine.CheckConsistency(), Is.Null);
        DriverBug.ExpectedFailure("trap 5", "ibmvmc_recv_msg(): after a failed h_copy_rdma the buffer is partition-owned and not free but never queued: \"return -1;\"");
    }

    // ------------------------------------------------------------------ H_REQUEST_VMC

    [TestCase("busy count=3", 0)]
    [TestCase("long-busy-1ms count=2", 0)]
    [TestCase("function", -Errno.EPERM)]
    [TestCase("authority", -Errno.EPERM)]
    [TestCase("not-available", -Errno.EPERM)]
    [TestCase("hardware", -Errno.EIO)]
    [TestCase("resource", -Errno.ENODEV)]
    [TestCase("parameter", -Errno.EINVAL)]
    public void RequestVmcReturnCodes(string rc, int expected)
    {
        var h = H("request-vmc rc=" + rc);
        Assert.That(h.Partition.RequestVmc(out uint drc), Is.EqualTo(expected));
        if (expected == 0) Assert.That(drc, Is.EqualTo(h.Limits.DrcIndex), "retried until it succeeded");
        Assert.That(h.Partition.RequestVmc(out _), Is.EqualTo(0), "spent");
    }

    [TestCase("privilege", -3L)]
    [TestCase("closed", 2L)]
    public void UnlistedRequestVmcCodesReachUserSpaceAsTrap13(string rc, long expected)
    {
        var h = H("request-vmc rc=" + rc);
        Assert.That(h.Partition.RequestVmc(out _), Is.EqualTo(expected));
        DriverBug.ExpectedFailure("trap 13", "ibmvmc_ioctl_requestvmc(): an rc it does not list falls through to \"return rc;\"");
    }

    // ------------------------------------------------------------------ H_REG_CRQ

    [Test]
    public void RegCrqResourceAtProbeFreesAndRegistersAgain()
    {
        var h = H("reg-crq rc=resource", probe: false);
        Assert.That(h.Partition.Probe(), Is.EqualTo(-16L), "init_crq_queue returns H_RESOURCE, which probe accepts");
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready));
        AssertEcho(h);
        h.AssertHealthy();
    }

    [Test]
    public void RegCrqResourceTwiceFailsTheProbe()
    {
        var h = H("reg-crq rc=resource count=2", probe: false);
        h.Partition.Probe();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Failed), "one retry only");
    }

    [Test]
    public void RegCrqClosedAtProbeWaitsForThePartner()
    {
        var h = H("reg-crq rc=closed ready-ms=100", probe: false);
        Assert.That(h.Partition.Probe(), Is.EqualTo(0), "\"Partner adapter not ready\"");
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.CrqInit));
        Assert.That(h.Engine.Counters.Dropped, Is.EqualTo(1), "the guest's init met no partner");
        h.Wait(TimeSpan.FromMilliseconds(100));
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Ready), "the partner's init started the handshake");
        AssertEcho(h);
        h.AssertHealthy();
    }

    [Test]
    public void RegCrqClosedDuringTheDriversResetFailsItForGood()
    {
        var h = H("close-resp status=4\nreg-crq rc=closed skip=1 ready-ms=10");
        var f = h.OpenRouterSession();
        Assert.That(h.Partition.Close(f), Is.EqualTo(0));
        h.Client.Settle();
        Assert.That(h.Partition.State, Is.EqualTo(DriverState.Failed), "ibmvmc_reset_task accepts only 0 and H_RESOURCE");
        h.Wait(TimeSpan.FromMilliseconds(10));
        Assert.That(h.Partition.IgnoredInits, Is.EqualTo(1), "the partner's init is ignored in state failed");
        Assert.That(h.Partition.SetHmcId(h.Partition.Open(), HmcId("x")), Is.EqualTo(-Errno.EIO));
        DriverBug.ExpectedFailure("reset path", "ibmvmc_reset_task(): \"if (rc != H_SUCCESS && rc != H_RESOURCE) ... ibmvmc.state = ibmvmc_state_failed;\" while ibmvmc_init_crq_queue() takes H_CLOSED as \"Partner adapter not ready\"");
    }

    // ------------------------------------------------------------------ flood

    [TestCase(DriverVersion.Linux61, 65536, 2000)]
    [TestCase(DriverVersion.Linux612, 4096, 200)]
    public void AFloodWithinTheBacklogFillsThePacingWindowAndIsDrained(DriverVersion version, int pageSize, int entries)
    {
        var h = H($"flood entries={entries} when=open", version: version, pageSize: pageSize);
        var f = h.Client.OpenSession();
        // This front-end model moves what the 1024-entry output ring holds per pass; QEMU refills it concurrently.
        Assert.That(h.Device.Queue.MaxOutstanding, Is.InRange(Math.Min(h.Device.Queue.PacingLimit, 1024u), h.Device.Queue.PacingLimit),
            "the guest queue filled up to the pacing limit, never more");
        Assert.That(h.Partition.Close(f), Is.EqualTo(0));
        Assert.That(h.Device.Failures, Is.Empty);
        AssertEcho(h);
        h.AssertHealthy();
    }

    [Test]
    public void AFloodBeyondTheBacklogFailsTheChannel()
    {
        var h = H("flood entries=3000 when=open");
        h.Client.OpenSession();
        Assert.That(h.Device.Failures.Single().Reason, Is.EqualTo(ChannelFailure.OutputBacklogOverflow));
        Assert.That(h.Partition.TransportEvents, Is.EqualTo(1));
        Reconnect(h);
        AssertEcho(h);
        Assert.That(h.Partition.Violations, Is.Empty);
    }

    // ------------------------------------------------------------------ vmcctl inject

    [Test]
    public void InjectingIntoAnEngineWithoutAPlanActsOnThatEngineOnly()
    {
        var h = new Harness();
        h.Client.OpenSession();
        var fired = h.Engine.InjectFault(FaultRule.Parse("rem-buf when=now buffers=2"));
        Assert.That(fired.Single().Detail, Does.StartWith("2 REM_BUF sent on HMC 0"), "acted before returning");
        h.Client.Settle();
        Assert.That(h.Partition.ValidBufferCount(0), Is.EqualTo(30));
        Assert.That(h.Engine.InjectFault(FaultRule.Parse("rdma rc=hardware dir=to-guest")), Is.Empty, "a point fault waits for its point");
        h.AssertHealthy();
    }

    [Test]
    public void AnInjectedPointFaultActsAtItsPoint()
    {
        var h = new Harness();
        var f = h.Client.OpenSession();
        h.Engine.InjectFault(FaultRule.Parse("request-vmc rc=hardware"));
        Assert.That(h.Partition.RequestVmc(out _), Is.EqualTo(-Errno.EIO));
        Assert.That(h.Partition.RequestVmc(out _), Is.EqualTo(0));
        Assert.That(h.Partition.Close(f), Is.EqualTo(0));
    }

    // ------------------------------------------------------------------ off

    [Test]
    public void APlanThatNeverMatchesChangesNothing()
    {
        var h = H("drop type=rem-buf\nrdma rc=hardware when=close skip=1000");
        for (int i = 0; i < 3; i++) AssertEcho(h, "s" + i);
        Assert.That(h.Faults!.History, Is.Empty);
        h.AssertHealthy();
    }
}
