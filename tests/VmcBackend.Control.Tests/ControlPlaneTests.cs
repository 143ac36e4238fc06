using System.Buffers;
using System.Buffers.Binary;
using Nerdbank.Streams;
using Serilog.Events;
using VmcBackend.Control.Client;
using VmcBackend.Control.Protocol;
using VmcBackend.Control.Replay;
using VmcBackend.Control.Trace;
using VmcBackend.Engine;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.Control.Tests;

/// <summary>vmcd's control plane over its real socket, with reference guests on the real data socket.</summary>
public class ControlPlaneTests
{
    private static byte[] Request(RouterOpcode op, uint token, ReadOnlySpan<byte> data = default) => RouterClient.Request(op, token, data);

    /// <summary>A router response to <paramref name="request"/>, as an attached program writes it.</summary>
    private static byte[] Response(ReadOnlySpan<byte> request, ReadOnlySpan<byte> data, ushort rc = 0)
    {
        var m = new byte[RouterClient.HeaderSize + data.Length];
        request[..RouterClient.HeaderSize].CopyTo(m);
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(4), (uint)m.Length);
        m[15] = 0x40;
        BinaryPrimitives.WriteUInt32BigEndian(m.AsSpan(16), (uint)data.Length);
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(22), rc);
        data.CopyTo(m.AsSpan(RouterClient.HeaderSize));
        return m;
    }

    private static async Task<AttachFrame> Next(AttachSession s, AttachFrameType type, int ms = 5000)
    {
        using var cts = new CancellationTokenSource(ms);
        while (true)
        {
            var f = await s.ReadAsync(cts.Token) ?? throw new AssertionException($"the attach channel ended while waiting for {type}");
            if (f.Type == type) return f;
        }
    }

    [Test]
    public void TheControlSocketIsPrivate()
    {
        using var rig = new ControlRig();
        Assert.That(File.GetUnixFileMode(rig.ControlPath), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
    }

    [Test]
    public async Task MalformedRequestsAreAnsweredAndAnEndlessLineClosesOnlyThatConnection()
    {
        using var rig = new ControlRig();
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        socket.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(rig.ControlPath));
        var stream = new System.Net.Sockets.NetworkStream(socket);
        var greeting = new List<byte>();
        for (int b; (b = stream.ReadByte()) != '\n';) greeting.Add((byte)b);
        Assert.That(System.Text.Encoding.UTF8.GetString([.. greeting]), Is.EqualTo("vmcd-control 1 ok"));
        await using var mx = MultiplexingStream.Create(stream, new MultiplexingStream.Options { ProtocolMajorVersion = 3 });
        var ch = await mx.OfferChannelAsync("control");
        async Task<ControlResponse> Ask(string line)
        {
            await LineChannel.WriteLineAsync(ch.Output, line);
            return System.Text.Json.JsonSerializer.Deserialize(await LineChannel.ReadLineAsync(ch.Input) ?? "null", ControlJson.Default.ControlResponse)!;
        }
        var notJson = await Ask("status please");
        Assert.That((notJson.Ok, notJson.Code), Is.EqualTo((false, ControlErrors.BadRequest)));
        var unknown = await Ask("{\"op\":\"frobnicate\",\"id\":42}");
        Assert.That((unknown.Ok, unknown.Code, unknown.Id), Is.EqualTo((false, ControlErrors.BadRequest, (long?)42)));
        Assert.That(unknown.Error, Is.EqualTo("unknown operation \"frobnicate\" (vmcd knows attach, inject, status, trace)"));
        var noHmc = await Ask("{\"op\":\"attach\"}");
        Assert.That(noHmc.Code, Is.EqualTo(ControlErrors.UnknownVm), "no VM is connected");
        // A line that never ends: vmcd stops reading at 64 KiB and closes this connection, logged once.
        ch.Output.Write(new byte[ControlProtocol.MaxLine + 10]);
        await ch.Output.FlushAsync();
        Assert.That(ControlRig.WaitFor(() => rig.Collector.Lines.Any(l => l.Level == LogEventLevel.Warning && l.Text.Contains("a line longer than 65536 bytes"))));
        await using var other = await rig.Client();
        Assert.That((await other.StatusAsync()).Vms, Is.Empty, "other clients are served");
    }

    [Test]
    public async Task StatusListsTheVmAndItsSessions()
    {
        using var rig = new ControlRig(new VmcLimits { MaxHmcs = 2 });
        var g = rig.Guest(hmcs: 2);
        var f = g.OpenRouter("status-hmc");
        await using var c = await rig.Client();
        var s = await c.StatusAsync();
        Assert.That(s.Vms, Has.Count.EqualTo(1));
        var vm = s.Vms[0];
        Assert.That((vm.Name, vm.Pid, vm.State, vm.Mtu, vm.PoolSize, vm.Hmcs, vm.DrcIndex),
            Is.EqualTo(("vm1", (uint)Environment.ProcessId, "ready", 4096, 32, 2, "0x81000001")));
        Assert.That(vm.Hmc, Has.Count.EqualTo(2));
        var h = vm.Hmc[0];
        Assert.That((h.Open, h.Session, h.HmcId, h.Handler), Is.EqualTo((true, (int)g.Partition.HmcSession(0), "status-hmc", "router")));
        Assert.That(h.Buffers.Partition + h.Buffers.Hypervisor, Is.EqualTo(32), "every buffer of the pool, by owner");
        Assert.That(h.Buffers.Delivered, Is.LessThanOrEqualTo(h.Buffers.Partition), "delivered (unread) buffers are the partition's");
        Assert.That(vm.Hmc[1].Open, Is.False);
        Assert.That(vm.Counters["messages_in"], Is.EqualTo(1), "exchange-ops");
        Assert.That(s.Vmcd.DataSocket, Is.EqualTo(rig.DataPath));
        g.Partition.Close(f);
    }

    [Test]
    public async Task UnknownVmsAndHmcIndexesAreRefusedInOneLine()
    {
        using var rig = new ControlRig();
        rig.Guest();
        await using var c = await rig.Client();
        var e1 = Assert.ThrowsAsync<ControlException>(() => c.StatusAsync("vm9"));
        Assert.That((e1!.Failure, e1.Message), Is.EqualTo((ControlFailure.BadInput, $"no VM vm9 (connected: vm1 pid {Environment.ProcessId}; name a VM or its front-end's pid)")));
        var e2 = Assert.ThrowsAsync<ControlException>(() => c.AttachAsync("vm9", 0));
        Assert.That(e2!.Failure, Is.EqualTo(ControlFailure.BadInput));
        var e3 = Assert.ThrowsAsync<ControlException>(() => c.AttachAsync("vm1", 1));
        Assert.That((e3!.Failure, e3.Message), Is.EqualTo((ControlFailure.BadInput, "vm1 has no HMC 1: its HMC indexes are 0..0 (vmcd --max-hmcs 1)")));
        var e4 = Assert.ThrowsAsync<ControlException>(() => c.TraceAsync("vm9"));
        Assert.That(e4!.Failure, Is.EqualTo(ControlFailure.BadInput));
        // The connection is still good after refusals.
        Assert.That((await c.StatusAsync(Environment.ProcessId.ToString())).Vms[0].Name, Is.EqualTo("vm1"), "a VM named by its front-end's pid");
    }

    [Test]
    public async Task ARefusedPeerIsToldWhyAndLogged()
    {
        using var rig = new ControlRig(admit: _ => "pid 4711 runs as uid 1000 gid 1000; allowed are root (vmcd --allow-uid / --allow-gid)");
        var e = Assert.ThrowsAsync<ControlException>(() => rig.Client());
        Assert.That((e!.Failure, e.Message), Is.EqualTo((ControlFailure.Refused,
            "vmcd refused this client: pid 4711 runs as uid 1000 gid 1000; allowed are root (vmcd --allow-uid / --allow-gid)")));
        Assert.That(ControlRig.WaitFor(() => rig.Collector.Count("refused a control client: pid 4711") == 1));
        await Task.CompletedTask;
    }

    [Test]
    public async Task AnAttachedProgramServesTheSessionAndDetachingGivesItBackUndisturbed()
    {
        using var rig = new ControlRig();
        var g = rig.Guest();
        var f = g.OpenRouter("attach-hmc");
        byte session = g.Partition.HmcSession(0);
        await using var c = await rig.Client();
        var a = await c.AttachAsync(null, 0);
        // The session was open already: the program is told so, with the HMC ID.
        var opened = await Next(a, AttachFrameType.Opened);
        Assert.That(System.Text.Encoding.ASCII.GetString(opened.Payload).TrimEnd('\0'), Is.EqualTo("attach-hmc"));
        Assert.That((await c.StatusAsync()).Vms[0].Hmc[0].Handler, Is.EqualTo("attached"));

        // A request from the guest reaches the program, its answer reaches the guest.
        var req = Request(RouterOpcode.Echo, 7, "to the host"u8);
        GuestIo.Write(g, f, req);
        var got = await Next(a, AttachFrameType.Message);
        Assert.That(got.Payload, Is.EqualTo(req));
        await a.SendAsync(Response(req, "from the host"u8));
        var answer = GuestIo.Await(g, f);
        Assert.That(answer, Is.Not.Null);
        Assert.That(answer!.AsSpan(RouterClient.HeaderSize).ToArray(), Is.EqualTo("from the host"u8.ToArray()));

        // Unsolicited: the guest is not waiting for anything, the message arrives.
        var ping = Request(RouterOpcode.Echo, 0xC0FFEE01, "PING"u8);
        await a.SendAsync(ping);
        Assert.That(GuestIo.Await(g, f), Is.EqualTo(ping));

        // Detach: the built-in router serves the same session again.
        await a.DisposeAsync();
        Assert.That(ControlRig.WaitFor(() => c.StatusAsync().Result.Vms[0].Hmc[0].Handler == "router"));
        Assert.That(g.Partition.HmcSession(0), Is.EqualTo(session), "the guest's session is the same one");
        Assert.That(g.Client.Call(f, RouterOpcode.ExchangeOps, 8, default, out _).ReturnCode, Is.EqualTo(0), "the router starts over: exchange-ops first");
        g.Echo(f, "after detach"u8, 9);
        Assert.That(g.Partition.Violations, Is.Empty);
        Assert.That(rig.Collector.Count("detached (the program's channel closed"), Is.EqualTo(1), "one detach line");
    }

    [Test]
    public async Task ASecondAttachIsRefusedAndTheFirstKeepsIt()
    {
        using var rig = new ControlRig();
        var g = rig.Guest();
        var f = g.OpenRouter("busy-hmc");
        await using var first = await rig.Client();
        await using var second = await rig.Client();
        var a = await first.AttachAsync("vm1", 0);
        var e = Assert.ThrowsAsync<ControlException>(() => second.AttachAsync("vm1", 0));
        Assert.That(e!.Failure, Is.EqualTo(ControlFailure.Busy));
        Assert.That(e.Message, Does.StartWith("HMC 0 of vm1 is attached to another client (vmcctl pid"));
        var req = Request(RouterOpcode.Echo, 1, "still mine"u8);
        GuestIo.Write(g, f, req);
        Assert.That((await Next(a, AttachFrameType.Message)).Payload, Is.EqualTo(req), "the first client still has the HMC");
    }

    [Test]
    public async Task AProgramThatDiesGivesTheHmcBack()
    {
        using var rig = new ControlRig();
        var g = rig.Guest();
        var f = g.OpenRouter("dying-hmc");
        var dying = await rig.Client();
        await dying.AttachAsync("vm1", 0);
        await using var watcher = await rig.Client();
        Assert.That((await watcher.StatusAsync()).Vms[0].Hmc[0].Handler, Is.EqualTo("attached"));
        await dying.DisposeAsync();      // its whole connection goes, as when vmcctl is killed
        Assert.That(ControlRig.WaitFor(() => watcher.StatusAsync().Result.Vms[0].Hmc[0].Handler == "router"));
        Assert.That(g.Client.Call(f, RouterOpcode.ExchangeOps, 2, default, out _).ReturnCode, Is.EqualTo(0));
        Assert.That(ControlRig.WaitFor(() => rig.Collector.Count("detached (the program's channel closed") == 1));
    }

    [Test]
    public async Task AProgramThatStopsReadingStallsOnlyItsOwnChannel()
    {
        using var rig = new ControlRig();
        var g = rig.Guest();
        var f = g.OpenRouter("stalled-hmc");
        await using var c = await rig.Client();
        var a = await c.AttachAsync("vm1", 0);
        // The program reads nothing; the guest writes until it has no buffer left, as with an HMC that does not answer.
        int written = 0, rc;
        var m = Request(RouterOpcode.Echo, 0, new byte[1000]);
        while ((rc = g.Partition.Write(f, m)) == m.Length) { written++; g.Client.Settle(); }
        Assert.That(rc, Is.EqualTo(-Errno.EBUSY), "write() says busy once the HMC holds every buffer");
        Assert.That(written, Is.EqualTo(32), "the session's whole pool: the HMC answered none");
        // Everything else is served meanwhile: status on the same connection, and the other direction.
        var s = await c.StatusAsync().WaitAsync(TimeSpan.FromSeconds(5));
        Assert.That(s.Vms[0].Counters["messages_in"], Is.EqualTo(1 + written));
        // The program reads again: every message is there, in order, none lost.
        for (int i = 0; i < written; i++) Assert.That((await Next(a, AttachFrameType.Message)).Payload, Is.EqualTo(m));
        Assert.That(s.Vms[0].Counters["attach_refused"], Is.EqualTo(0));
    }

    [Test]
    public async Task MessagesForAGuestThatDoesNotReadWaitThenAreRefusedAndSaidSo()
    {
        using var rig = new ControlRig();
        var g = rig.Guest();
        var f = g.OpenRouter("flooded-hmc");
        await using var c = await rig.Client();
        var a = await c.AttachAsync("vm1", 0);
        await Next(a, AttachFrameType.Opened);
        // 100 unsolicited messages; the guest reads none of them for now (its kernel still takes them in).
        for (uint i = 0; i < 100; i++)
        {
            await a.SendAsync(Request(RouterOpcode.Echo, i, new byte[64]));
            if (i % 10 == 0) for (int k = 0; k < 20; k++) { g.Device.Run(); g.Partition.RunPending(); }
        }
        var refused = await Next(a, AttachFrameType.Refused, 10_000);
        Assert.That(System.Text.Encoding.UTF8.GetString(refused.Payload), Is.EqualTo("the guest is not reading: its outbound queue is full"));
        Assert.That(ControlRig.WaitFor(() => c.StatusAsync().Result.Vms[0].Counters["outbound_refused"] > 0));
        // The guest reads: what was accepted arrives in order, the channel is healthy.
        var tokens = new List<uint>();
        while (GuestIo.Await(g, f, 2000) is { } got) tokens.Add(BinaryPrimitives.ReadUInt32BigEndian(got.AsSpan(8)));
        Assert.That(tokens, Is.Ordered.And.Count.GreaterThan(30));
        Assert.That(g.Device.Losses, Is.EqualTo(0));
        Assert.That(g.Partition.Violations, Is.Empty);
    }

    [Test]
    public async Task ASlowTraceReaderLosesRecordsAndIsToldTheDatapathDoesNotWait()
    {
        using var rig = new ControlRig();
        var g = rig.Guest();
        var f = g.OpenRouter("slow-reader");
        await using var c = await rig.Client();
        var trace = await c.TraceAsync("vm1");
        // Nobody reads the trace channel: its window (1 MB) and the VM's 4 MiB ring fill up.
        var data = new byte[4064];
        for (uint i = 0; i < 2000; i++) g.Echo(f, data, i);     // about 17 MB of records
        // Now read: the file header, the VM (joined), records, and LOST records for what did not fit.
        var reader = new TraceReader(trace.Input.AsStream(), "the trace channel");
        long lost = 0, newest = -1;
        int records = 0;
        var readAll = Task.Run(() =>
        {
            while (reader.TryRead(out var r))
            {
                records++;
                if (r.Type == RecordType.Lost) lost += r.LostCount;
                if (r.Type == RecordType.Message && r.Message.Direction == Engine.Observe.MessageDirection.ToPartition)
                    Volatile.Write(ref newest, BinaryPrimitives.ReadUInt32BigEndian(r.Message.Head.Span[8..]));
            }
        });
        // The reader catches up: echoes made after it started reading show up in the trace.
        uint token = 10_000;
        Assert.That(ControlRig.WaitFor(() => { g.Echo(f, data, ++token); return Volatile.Read(ref newest) >= 10_000; }, 20_000),
            "the reader catches up with the newest records");
        Assert.That(lost, Is.GreaterThan(1000), $"records lost, reported in LOST records ({records} read)");
        trace.Dispose();
        Assert.That(ControlRig.WaitFor(() => rig.Collector.Lines.Any(l => l.Text.Contains("records were lost"))));
    }

    [Test]
    public async Task ATraceOfAVmFromItsStartReplaysIdenticallyAttachAndUnsolicitedMessagesIncluded()
    {
        using var rig = new ControlRig();
        await using var c = await rig.Client();
        var channel = await c.TraceAsync();
        // Following starts before the answer: a VM that connects from now on is traced from its start
        // (it used to start only once vmcd saw the channel accepted, and this test lost that race under load).
        Assert.That((await c.StatusAsync()).Vmcd.TraceReaders, Is.EqualTo(1), "the reader follows once TraceAsync returns");
        var records = new List<TraceRecord>();
        TraceHeader header = default;
        var reading = Task.Run(() =>
        {
            var r = new TraceReader(channel.Input.AsStream(), "the trace channel");
            header = r.Header;
            while (r.TryRead(out var rec)) { records.Add(rec); if (rec.Type == RecordType.VmEnd) return; }
        });
        using (var g = new ReferenceGuest(rig.DataPath))
        {
            var f = g.OpenRouter("replayed");
            g.Echo(f, new byte[100], 2);
            var a = await c.AttachAsync("vm1", 0);
            await Next(a, AttachFrameType.Opened);
            var req = Request(RouterOpcode.Echo, 3, "attached"u8);
            GuestIo.Write(g, f, req);
            await Next(a, AttachFrameType.Message);
            await a.SendAsync(Response(req, "answer"u8));
            Assert.That(GuestIo.Await(g, f), Is.Not.Null);
            // Unsolicited messages while the guest reads nothing: buffers run short (REM_BUF), the last one
            // waits for the guest to read (at most pool - 1 unread), retried while it waits (POLL, clock readings).
            for (uint i = 0; i < 32; i++) await a.SendAsync(Request(RouterOpcode.Echo, 100 + i, new byte[200]));
            Assert.That(ControlRig.WaitFor(() => c.StatusAsync().Result.Vms[0].Hmc[0].OutboundQueued > 0));
            for (int k = 0; k < 200; k++) { g.Device.Run(); g.Partition.RunPending(); Thread.Sleep(1); }
            int n = 0;
            while (GuestIo.Await(g, f, 1000) != null) n++;
            Assert.That(n, Is.EqualTo(32), "every unsolicited message delivered");
            await a.DisposeAsync();
            Assert.That(ControlRig.WaitFor(() => c.StatusAsync().Result.Vms[0].Hmc[0].Handler == "router"));
            Assert.That(g.Client.Call(f, RouterOpcode.ExchangeOps, 4, default, out _).ReturnCode, Is.EqualTo(0));
            g.Partition.Close(f);
            g.Client.Settle();
        }
        Assert.That(reading.Wait(10_000), "VM_END arrives when the guest disconnects");
        var types = records.Select(r => r.Type).ToHashSet();
        Assert.That(types, Is.SupersetOf(new[] { RecordType.VmStart, RecordType.RegCrq, RecordType.Submit, RecordType.Post, RecordType.CopyRdma,
            RecordType.Memory, RecordType.Result, RecordType.Message, RecordType.Attach, RecordType.HostSend, RecordType.Detach,
            RecordType.Poll, RecordType.Time, RecordType.Reset, RecordType.VmEnd }));
        Assert.That(records[0].Flags, Is.EqualTo((byte)VmStartFlags.None), "the trace saw the VM connect");
        var result = Replayer.Replay(header, records);
        Assert.That(result[0].Divergence, Is.Null);

        // The same recording with one hypervisor output changed (an ADD_BUF's buffer id) diverges there.
        int at = records.FindLastIndex(r => r.Type == RecordType.Post && r.Entry[1] == 0x04);
        var bad = records[at];
        var p = (byte[])bad.Payload.Clone();
        p[7] ^= 0x02;
        records[at] = new TraceRecord(bad.Type, bad.Flags, bad.Vm, bad.TimeNs, p, bad.Offset, bad.Index);
        Assert.That(Replayer.Replay(header, records)[0].Divergence, Does.Contain($"record {bad.Index}"));
    }

    [Test]
    public async Task WhenTheLastReaderLeavesTheEngineHasNoObserverAgain()
    {
        using var rig = new ControlRig();
        rig.Guest();
        var vm = rig.Registry.Vms[0];
        Assert.That(await vm.Run(e => e.Observer), Is.Null);
        await using var c = await rig.Client();
        var trace = await c.TraceAsync();
        Assert.That(ControlRig.WaitFor(() => vm.Run(e => e.Observer != null).Result));
        trace.Dispose();
        Assert.That(ControlRig.WaitFor(() => vm.Run(e => e.Observer == null).Result), "no reader: no cost");
    }
}
