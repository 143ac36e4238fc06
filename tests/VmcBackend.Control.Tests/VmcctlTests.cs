using System.Buffers.Binary;
using System.Diagnostics;
using System.Text.Json;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.Testing;
using VmcBackend.Wire.Router;

namespace VmcBackend.Control.Tests;

/// <summary>The real vmcctl (and the example HMC program) as separate processes against vmcd's control socket.</summary>
public class VmcctlTests
{
    /// <summary>A built executable of this solution (same configuration as the tests).</summary>
    private static string Binary(string project, string name)
    {
        string bin = AppContext.BaseDirectory;                       // tests/VmcBackend.Control.Tests/bin/<Configuration>/net10.0/
        string config = new DirectoryInfo(bin).Parent!.Name;
        string repo = Path.GetFullPath(Path.Combine(bin, "../../../../.."));
        string path = Path.Combine(repo, project, "bin", config, "net10.0", name);
        if (!File.Exists(path)) Assert.Fail($"{path} is missing: build the solution first (dotnet build VmcBackend.sln -c {config})");
        return path;
    }

    private static string Vmcctl => Binary("src/Vmcctl", "vmcctl");

    /// <summary>A running process with its output collected.</summary>
    private sealed class Run : IDisposable
    {
        private readonly System.Text.StringBuilder _out = new(), _err = new();
        public readonly Process P;

        public Run(string file, IEnumerable<string> args, bool binaryIo = false, string[]? prefix = null)
        {
            var psi = new ProcessStartInfo(prefix?[0] ?? file) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
            if (prefix != null) { foreach (var a in prefix[1..]) psi.ArgumentList.Add(a); psi.ArgumentList.Add(file); }
            foreach (var a in args) psi.ArgumentList.Add(a);
            P = Process.Start(psi)!;
            P.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (_err) _err.AppendLine(e.Data); };
            P.BeginErrorReadLine();
            if (!binaryIo)
            {
                P.OutputDataReceived += (_, e) => { if (e.Data != null) lock (_out) _out.AppendLine(e.Data); };
                P.BeginOutputReadLine();
            }
        }

        public string Out { get { lock (_out) return _out.ToString(); } }
        public string Err { get { lock (_err) return _err.ToString(); } }

        public int Wait(int ms = 20_000)
        {
            if (!P.WaitForExit(ms)) { P.Kill(); Assert.Fail($"{P.StartInfo.FileName} did not exit within {ms} ms; stderr: {Err}"); }
            P.WaitForExit();
            return P.ExitCode;
        }

        public void Dispose()
        {
            try { if (!P.HasExited) P.Kill(); } catch (InvalidOperationException) { }
            P.Dispose();
        }
    }

    private static (int Rc, string Out, string Err) Vmc(params string[] args)
    {
        using var r = new Run(Vmcctl, args);
        int rc = r.Wait();
        return (rc, r.Out, r.Err);
    }

    private static void OneLine(string err, string contains)
    {
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), $"one line on stderr: {err}");
        Assert.That(lines[0], Does.StartWith("vmcctl: ").And.Contain(contains));
    }

    [Test]
    public void InjectPrintsWhatTheFaultDidAndRefusesAnUnknownOneWithExit2()
    {
        using var rig = new ControlRig();
        var g = rig.Guest();
        var armed = Vmc("inject", "--control", rig.ControlPath, "request-vmc", "rc=busy", "count=3");
        Assert.That((armed.Rc, armed.Out.Trim()), Is.EqualTo((0, "vm1: request-vmc rc=busy count=3: armed (acts at its next point or trigger)")), armed.Err);
        Assert.That(g.Partition.RequestVmc(out uint drc), Is.EqualTo(0), "the driver's loop retries H_BUSY");
        Assert.That(rig.Collector.Count("fault request-vmc rc=busy count=3: H_REQUEST_VMC returns 0 (success)") + rig.Collector.Count("fault request-vmc rc=busy count=3: H_REQUEST_VMC returns 1 (busy)"),
            Is.EqualTo(3), "three busy answers");
        var bad = Vmc("inject", "--control", rig.ControlPath, "no-such-fault");
        Assert.That(bad.Rc, Is.EqualTo(2));
        OneLine(bad.Err, "unknown fault 'no-such-fault'");
        g.OpenRouter("inject-hmc");
        var now = Vmc("inject", "--control", rig.ControlPath, "--vm", "vm1", "rem-buf", "buffers=2");
        Assert.That((now.Rc, now.Out.Trim()), Is.EqualTo((0, "vm1: rem-buf buffers=2 when=now: 2 REM_BUF sent on HMC 0 (never the last buffer)")), now.Err);
    }

    [Test]
    public void StatusJsonListsTheVmAndItsHmcSessions()
    {
        using var rig = new ControlRig();
        var g = rig.Guest();
        g.OpenRouter("json-hmc");
        var (rc, stdout, stderr) = Vmc("status", "--json", "--control", rig.ControlPath);
        Assert.That(rc, Is.EqualTo(0), stderr);
        using var doc = JsonDocument.Parse(stdout);
        var vm = doc.RootElement.GetProperty("vms")[0];
        Assert.That(vm.GetProperty("name").GetString(), Is.EqualTo("vm1"));
        Assert.That(vm.GetProperty("pid").GetUInt32(), Is.EqualTo((uint)Environment.ProcessId));
        Assert.That(vm.GetProperty("state").GetString(), Is.EqualTo("ready"));
        var hmc = vm.GetProperty("hmc")[0];
        Assert.That(hmc.GetProperty("open").GetBoolean(), Is.True);
        Assert.That(hmc.GetProperty("hmc_id").GetString(), Is.EqualTo("json-hmc"));
        Assert.That(hmc.GetProperty("session").GetInt32(), Is.EqualTo(g.Partition.HmcSession(0)));
        Assert.That(hmc.GetProperty("buffers").GetProperty("partition").GetInt32(), Is.GreaterThan(0));
        var text = Vmc("status", "--control", rig.ControlPath);
        Assert.That(text.Out, Does.Contain("vm1: front-end pid").And.Contain("HMC 0: session").And.Contain("\"json-hmc\""));
    }

    [Test]
    public void TraceWriteRecordsAndReplayIsIdenticalThenTamperedTruncatedAndOtherVersionAreCaught()
    {
        using var rig = new ControlRig();
        string file = Path.Combine(rig.Dir, "run.trace");
        using (var trace = new Run(Vmcctl, ["trace", "--write", file, "--stop-after", "1", "--control", rig.ControlPath]))
        {
            Assert.That(ControlRig.WaitFor(() => trace.Err.Contains("vmcctl: tracing every VM")), "the trace is set up before the VM connects");
            using (var g = new ReferenceGuest(rig.DataPath))
            {
                var f = g.OpenRouter("recorded");
                for (uint i = 0; i < 20; i++) g.Echo(f, new byte[10 + 200 * i], i);
                g.Partition.Close(f);
                g.Client.Settle();
            }
            Assert.That(trace.Wait(), Is.EqualTo(0), trace.Err);
            Assert.That(trace.Err, Does.Match(@"vmcctl: \d+ records written to "));
        }
        var ok = Vmc("replay", file);
        Assert.That(ok.Rc, Is.EqualTo(0), ok.Out + ok.Err);
        Assert.That(ok.Out, Does.StartWith("vm1: ").And.Contain("every output identical"));

        // Tampered: one byte of the 10th hypervisor entry.
        var bytes = File.ReadAllBytes(file);
        var (_, records) = TraceImage.Read(bytes);
        var post = records.Where(r => r.Type == Trace.RecordType.Post).ElementAt(10);
        var tampered = (byte[])bytes.Clone();
        tampered[post.Offset + 16 + 6] ^= 0x01;
        File.WriteAllBytes(file + ".tampered", tampered);
        var bad = Vmc("replay", file + ".tampered");
        Assert.That(bad.Rc, Is.EqualTo(1));
        Assert.That(bad.Out, Does.Contain($"diverges at record {post.Index}").And.Contain("recorded").And.Contain("replayed"));
        OneLine(bad.Err, "1 of 1 VM diverged");

        File.WriteAllBytes(file + ".cut", bytes.AsSpan(0, (int)records[^3].Offset + 20).ToArray());
        var cut = Vmc("replay", file + ".cut");
        Assert.That(cut.Rc, Is.EqualTo(2));
        OneLine(cut.Err, "is truncated at byte");

        var v9 = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(v9.AsSpan(8), 9);
        File.WriteAllBytes(file + ".v9", v9);
        var other = Vmc("replay", file + ".v9");
        Assert.That(other.Rc, Is.EqualTo(2));
        OneLine(other.Err, "has trace format version 9; this vmcctl reads version 1 only");
        var decode = Vmc("trace", "--read", file + ".v9");
        Assert.That(decode.Rc, Is.EqualTo(2));

        var text = Vmc("trace", "--read", file);
        Assert.That(text.Rc, Is.EqualTo(0));
        Assert.That(text.Out, Does.Contain("guest> H_REG_CRQ").And.Contain("<hv    CAP_RESP").And.Contain("router response ECHO"));
    }

    [Test]
    public void AttachRefusalsAreOneLineAndAnExitCode()
    {
        using var rig = new ControlRig();
        rig.Guest().OpenRouter("refusals");
        var unknownVm = Vmc("attach", "--vm", "vm9", "--hmc", "0", "--control", rig.ControlPath);
        Assert.That(unknownVm.Rc, Is.EqualTo(2));
        OneLine(unknownVm.Err, "no VM vm9");
        var unknownHmc = Vmc("attach", "--vm", "vm1", "--hmc", "3", "--control", rig.ControlPath);
        Assert.That(unknownHmc.Rc, Is.EqualTo(2));
        OneLine(unknownHmc.Err, "vm1 has no HMC 3");
        using var first = new Run(Vmcctl, ["attach", "--vm", "vm1", "--hmc", "0", "--hex", "--control", rig.ControlPath]);
        Assert.That(ControlRig.WaitFor(() => first.Err.Contains("vmcctl: attached")), first.Err);
        var second = Vmc("attach", "--vm", "vm1", "--hmc", "0", "--control", rig.ControlPath);
        Assert.That(second.Rc, Is.EqualTo(3));
        OneLine(second.Err, "HMC 0 of vm1 is attached to another client");
        Assert.That(first.P.HasExited, Is.False, "the first keeps it");
        var noVmcd = Vmc("status", "--control", Path.Combine(rig.Dir, "nothing.ctl"));
        Assert.That(noVmcd.Rc, Is.EqualTo(3));
        OneLine(noVmcd.Err, "no control socket at");
        var dataSocket = Vmc("status", "--control", rig.DataPath);
        Assert.That(dataSocket.Rc, Is.EqualTo(3));
        OneLine(dataSocket.Err, "not a vmcd control socket");
    }

    [Test]
    public void AClientOfAnotherUidIsRefusedAndLogged()
    {
        using var rig = new ControlRig();
        string[] asNobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
        // The socket is 0600 (and its directory private): the kernel refuses first.
        using (var r = new Run(Vmcctl, ["status", "--control", rig.ControlPath], prefix: asNobody))
        {
            Assert.That(r.Wait(), Is.EqualTo(3));
            OneLine(r.Err, "permission denied");
        }
        // Reachable anyway (as with a group-readable socket unit): vmcd's peer check refuses, says why, logs it.
        File.SetUnixFileMode(rig.Dir, (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(rig.ControlPath, (UnixFileMode)0b110_110_110);
        using (var r = new Run(Vmcctl, ["status", "--control", rig.ControlPath], prefix: asNobody))
        {
            Assert.That(r.Wait(), Is.EqualTo(3));
            OneLine(r.Err, "vmcd refused this client: pid");
            Assert.That(r.Err, Does.Contain("runs as uid 65534"));
        }
        Assert.That(ControlRig.WaitFor(() => rig.Collector.Count("refused a control client: pid") == 1));
    }

    [Test]
    public void AttachHexCarriesOneMessagePerLineAndEofDetaches()
    {
        using var rig = new ControlRig();
        var g = rig.Guest();
        var f = g.OpenRouter("hex-hmc");
        using var a = new Run(Vmcctl, ["attach", "--hmc", "0", "--hex", "--control", rig.ControlPath]);
        Assert.That(ControlRig.WaitFor(() => a.Err.Contains("the guest opened a session (HMC ID \"hex-hmc\")")), a.Err);
        var req = RouterClient.Request(RouterOpcode.Echo, 5, "hex"u8);
        GuestIo.Write(g, f, req);
        Assert.That(ControlRig.WaitFor(() => a.Out.Contains(Convert.ToHexString(req))), a.Out);
        var reply = (byte[])req.Clone();
        reply[15] = 0x40;
        a.P.StandardInput.WriteLine("# a comment, then the reply with spaces in it");
        a.P.StandardInput.WriteLine(string.Join(' ', Convert.ToHexString(reply).Chunk(8).Select(c => new string(c))));
        a.P.StandardInput.Flush();
        Assert.That(GuestIo.Await(g, f), Is.EqualTo(reply));
        a.P.StandardInput.Close();
        Assert.That(a.Wait(), Is.EqualTo(0), a.Err);
        Assert.That(a.Err, Does.Contain("vmcctl: detached"));
        Assert.That(g.Client.Call(f, RouterOpcode.ExchangeOps, 6, default, out _).ReturnCode, Is.EqualTo(0), "the router has the HMC back");
    }

    [Test]
    public void TheExampleHmcProgramPlaysTheHmcThroughVmcctl()
    {
        using var rig = new ControlRig();
        var g = rig.Guest();
        using var attach = new Run(Vmcctl, ["attach", "--vm", "vm1", "--hmc", "0", "--control", rig.ControlPath], binaryIo: true);
        using var example = new Run(Binary("tests/HmcExample", "hmc-example"), [], binaryIo: true);
        // vmcctl's stdout is the program's stdin and the other way round (a shell does it with two fifos).
        var pipes = Task.WhenAll(
            attach.P.StandardOutput.BaseStream.CopyToAsync(example.P.StandardInput.BaseStream).ContinueWith(_ => example.P.StandardInput.Close()),
            example.P.StandardOutput.BaseStream.CopyToAsync(attach.P.StandardInput.BaseStream).ContinueWith(_ => attach.P.StandardInput.Close()));
        Assert.That(ControlRig.WaitFor(() => attach.Err.Contains("vmcctl: attached")), attach.Err);
        var f = g.Client.OpenSession("example");
        void Call(byte[] request, Func<byte[], bool> check, string what)
        {
            GuestIo.Write(g, f, request);
            var answer = GuestIo.Await(g, f);
            Assert.That(answer != null && check(answer), what + $"; example: {example.Err}");
        }
        static ushort Rc(byte[] m) => BinaryPrimitives.ReadUInt16BigEndian(m.AsSpan(22));
        Call(RouterClient.Request(RouterOpcode.ExchangeOps, 1), m => Rc(m) == 0, "exchange-ops answered");
        Call(RouterClient.Request((RouterOpcode)0x0F01, 2), m => m.AsSpan(32).SequenceEqual("hmc-example"u8), "the example answers, not the router");
        Call(RouterClient.Request(RouterOpcode.Echo, 3, new byte[3000]), m => m.Length == 3032 && Rc(m) == 0, "echo");
        Call(RouterClient.Request(RouterOpcode.Echo, 4, "UNSOLICITED 100"u8), m => Rc(m) == 0, "unsolicited armed");
        var ping = GuestIo.Await(g, f);
        Assert.That(ping, Is.Not.Null, "the unsolicited message arrives while the guest only waits");
        Assert.That(ping!.AsSpan(32).SequenceEqual("PING 1"u8) && (ping[15] & 0x80) != 0, "a request from the HMC side");
        var pong = (byte[])ping.Clone();
        pong[15] = 0x40;
        GuestIo.Write(g, f, pong);
        Assert.That(ControlRig.WaitFor(() => example.Err.Contains("answered")), example.Err);
        Call(RouterClient.Request(RouterOpcode.Echo, 5, "BYE"u8), m => Rc(m) == 0, "bye");
        Assert.That(example.Wait(), Is.EqualTo(0));
        Assert.That(attach.Wait(), Is.EqualTo(0), attach.Err);
        Assert.That(pipes.Wait(5000));
        Assert.That(g.Client.Call(f, RouterOpcode.ExchangeOps, 6, default, out _).ReturnCode, Is.EqualTo(0), "the built-in router has the HMC again");
        Assert.That(g.Partition.Violations, Is.Empty);
    }
    /// <summary>vmcctl trace --read FILE --json: one JSON object per record of a real-driver trace, with the decoded fields.</summary>
    [Test]
    public void TraceReadJsonDecodesEveryRecordOfARealTrace()
    {
        string repo = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../.."));
        string file = Path.Combine(repo, "tests", "traces", "6.1-trace.vmctrace.gz");
        var (_, records) = Control.Trace.TraceReader.ReadFile(file);
        var r = Vmc("trace", "--read", file, "--json");
        Assert.That(r.Rc, Is.EqualTo(0), r.Err);
        var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(records.Count), "one line per record, no header line");
        var docs = lines.Select(l => JsonDocument.Parse(l).RootElement).ToList();
        for (int i = 0; i < docs.Count; i++)
        {
            Assert.That(docs[i].GetProperty("i").GetInt64(), Is.EqualTo(i));
            Assert.That(docs[i].GetProperty("type").GetString(), Is.EqualTo(Control.Trace.TraceReader.Name(records[i].Type)));
        }
        Assert.That(docs[0].GetProperty("type").GetString(), Is.EqualTo("VM_START"));
        Assert.That(docs[0].GetProperty("max_mtu").GetInt32(), Is.EqualTo(4096));
        Assert.That(docs[0].GetProperty("joined").GetBoolean(), Is.False);
        var cap = docs.First(d => d.TryGetProperty("msg", out var m) && m.GetString() == "CAP_RESP");
        Assert.That(cap.GetProperty("who").GetString(), Is.EqualTo("<hv"));
        Assert.That(cap.GetProperty("status").GetInt32(), Is.EqualTo(0));
        Assert.That(cap.GetProperty("mtu").GetInt32(), Is.EqualTo(4096));
        var open = docs.First(d => d.TryGetProperty("msg", out var m) && m.GetString() == "OPEN_RESP");
        Assert.That(open.GetProperty("status_name").GetString(), Is.EqualTo("Success"));
        Assert.That(open.GetProperty("session").GetInt32(), Is.GreaterThan(0));
        var signal = docs.First(d => d.TryGetProperty("msg", out var m) && m.GetString() == "SIGNAL" && d.GetProperty("type").GetString() == "SUBMIT");
        Assert.That(signal.GetProperty("length").GetInt64(), Is.GreaterThan(0));
        var echoRcs = docs.Where(d => d.TryGetProperty("router", out var h) && h.GetProperty("op").GetString() == "ECHO" && h.GetProperty("kind").GetString() == "response")
            .Select(d => d.GetProperty("router").GetProperty("rc").GetInt32()).ToList();
        Assert.That(echoRcs, Has.Member(0).And.Member(0x8024), "echo responses, a refused one among them (vmctest's bad-category check)");
        Assert.That(docs.Count(d => d.GetProperty("type").GetString() == "RESULT" && d.GetProperty("rc_name").GetString() == "H_SUCCESS"), Is.GreaterThan(20));
        Assert.That(docs.Select(d => d.GetProperty("t").GetDouble()), Is.Ordered, "times go forward");

        var live = Vmc("trace", "--json", "--control", "/nonexistent.ctl");
        Assert.That(live.Rc, Is.EqualTo(2));
        OneLine(live.Err, "--json goes with --read FILE");
    }
}
