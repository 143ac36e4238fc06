using System.Diagnostics;
using VmcBackend.ReferenceFrontEnd;
using VmcBackend.ReferenceFrontEnd.Wire;
using VmcBackend.Transport.Server;

namespace VmcBackend.Transport.Tests;

/// <summary>The listener: private socket, peer credentials, connection cap, stop, resource stability.</summary>
public class ServerTests
{
    private static byte[] Entry(uint tag)
    {
        var e = new byte[16];
        e[0] = 0x80; e[1] = 0x02;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(e.AsSpan(12), tag);
        return e;
    }

    [Test]
    public void SocketIsPrivateToTheOwner()
    {
        using var fx = new ServerFixture();
        Assert.That(File.GetUnixFileMode(fx.Path), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
    }

    [Test]
    public void MissingSocketDirectoryIsNamed()
    {
        var e = Assert.Throws<IOException>(() => VmcServer.Listen("/nonexistent-vmcd-dir/x.sock", fe => new StubBackend(fe), Serilog.Core.Logger.None));
        Assert.That(e!.Message, Does.Contain("/nonexistent-vmcd-dir").And.Contain("does not exist"));
    }

    [Test]
    public void PeerWithAnotherUidIsRefusedWithALogLine()
    {
        if (Environment.UserName != "root") Assert.Ignore("needs root to run a client as nobody");
        using var fx = new ServerFixture();
        // Make the socket reachable for the test (vmcd creates it 0600 in a private directory).
        File.SetUnixFileMode(fx.Directory, (UnixFileMode)0x1ED);   // 0755
        File.SetUnixFileMode(fx.Path, (UnixFileMode)0x1B6);        // 0666
        string script = $"import socket\ns = socket.socket(socket.AF_UNIX); s.connect('{fx.Path}'); s.settimeout(5)\n" +
                        "try:\n    s.sendall(bytes([1,0,0,0,2,0,0,0,0,0,0,0]))\n    print('closed' if len(s.recv(100)) == 0 else 'answered')\n" +
                        "except (ConnectionResetError, BrokenPipeError):\n    print('closed')\n";
        var p = Process.Start(new ProcessStartInfo("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3", "-c", script])
            { RedirectStandardOutput = true, RedirectStandardError = true })!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        TestContext.Out.WriteLine($"client as nobody: {output.Trim()}");
        Assert.That(output, Does.Contain("closed"), "the connection was closed without a reply");
        Assert.That(fx.WaitForError("uid 65534"), "vmcd logged the refusal");
        TestContext.Out.WriteLine("vmcd: " + fx.Collector.Errors.First(e => e.Contains("65534")));
        // vmcd's own uid (root here) is still served.
        using var fe = new LinkedFrontEnd(fx);
        Assert.That(fe.Echo(Entry(1)), Is.EqualTo(Entry(1)));
    }

    [Test]
    public void TheAdmissionRuleIsConsultedForEveryPeer()
    {
        int asked = 0;
        using var fx = new ServerFixture(options: new VmcServerOptions { AdmitPeer = _ => Interlocked.Increment(ref asked) == 1 ? "test policy says no" : null });
        using (var refused = fx.RawConnect()) Assert.That(refused.WaitForClose(5000, out int bytes) && bytes == 0, "closed without a word");
        Assert.That(fx.WaitForError("test policy says no"));
        using var fe = new LinkedFrontEnd(fx);
        Assert.That(fe.Echo(Entry(4)), Is.EqualTo(Entry(4)));
        Assert.That(asked, Is.EqualTo(2));
    }

    /// <summary>
    /// Socket activation: systemd keeps its own reference to the listening socket, so closing ours
    /// does not wake a blocked accept(); Stop() must still end promptly and leave the socket usable.
    /// </summary>
    [Test]
    public void StopOnAnInheritedSocketEndsPromptlyAndLeavesItListening()
    {
        string dir = Directory.CreateTempSubdirectory("vmcd-inherited").FullName;
        string path = System.IO.Path.Combine(dir, "s.sock");
        using var systemd = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, 0);
        systemd.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
        systemd.Listen(8);
        int inherited = Tmds.Linux.LibC.dup((int)systemd.Handle);
        var server = VmcServer.FromFd(inherited, fe => new StubBackend(fe), Serilog.Core.Logger.None);
        server.Start();
        using (var ram = new Memfd("inh", 1 << 20))
        using (var link = FrontEndLink.Connect(path, ram)) Assert.That(link.Channel.Request(Ch.KindRequestVmc)?.Rc, Is.EqualTo(0));
        var sw = Stopwatch.StartNew();
        server.Stop();
        Assert.That(sw.ElapsedMilliseconds, Is.LessThan(2000), "Stop() did not wait for a blocked accept");
        using (var client = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, 0))
        {
            client.Connect(new System.Net.Sockets.UnixDomainSocketEndPoint(path));
            using var accepted = systemd.Accept();
            Assert.That(accepted.Connected, "the activation socket still accepts");
        }
        Directory.Delete(dir, true);
    }

    [Test]
    public void ConnectionsBeyondTheCapGetADefinedRefusal()
    {
        using var fx = new ServerFixture(options: new VmcServerOptions { MaxConnections = 3 });
        var three = Enumerable.Range(0, 3).Select(_ => new LinkedFrontEnd(fx)).ToList();
        using (var fourth = fx.RawConnect())
        {
            var f = fourth.ReadFrame(5000);
            Assert.That(f?.Request, Is.EqualTo(Vu.ChannelFailed));
            Assert.That(fourth.Failure?.Text, Does.Contain("at most 3"));
            Assert.That(fourth.WaitForClose(5000, out _));
        }
        Assert.That(fx.WaitForError("the limit is 3"));
        foreach (var fe in three) Assert.That(fe.Echo(Entry(2)), Is.EqualTo(Entry(2)), "the admitted ones are unaffected");
        three[0].Dispose();
        Assert.That(ServerFixture.WaitFor(() => fx.Server.ConnectionCount == 2));
        using (var again = new LinkedFrontEnd(fx)) Assert.That(again.Echo(Entry(3)), Is.EqualTo(Entry(3)), "room again after a disconnect");
        foreach (var fe in three.Skip(1)) fe.Dispose();
    }

    [Test]
    public void StopClosesEveryConnection()
    {
        using var fx = new ServerFixture();
        using var a = new LinkedFrontEnd(fx);
        using var b = new LinkedFrontEnd(fx);
        fx.Server.Stop();
        Assert.That(fx.Server.ConnectionCount, Is.EqualTo(0));
        Assert.That(a.Link.Socket.WaitForClose(5000, out _) && b.Link.Socket.WaitForClose(5000, out _));
        Assert.That(File.Exists(fx.Path), Is.False, "socket removed");
    }

    /// <summary>Issue 12 item 6: 100 front-ends at once; all complete; the slowest gets at least half the median throughput.</summary>
    [Test]
    public void HundredFrontEndsAtOnceAreServedFairly()
    {
        using var fx = new ServerFixture();
        const int N = 100;
        var counts = new long[N];
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var ready = new Barrier(N + 1);
        var stopAt = 0L;
        var threads = Enumerable.Range(0, N).Select(i => new Thread(() =>
        {
            try
            {
                using var fe = new LinkedFrontEnd(fx);
                fe.Channel.Request(Ch.KindRegCrq, 64);
                ready.SignalAndWait();
                var got = new byte[16];
                uint n = 0;
                while (Environment.TickCount64 < Volatile.Read(ref stopAt))
                {
                    var e = Entry(n);
                    if (!fe.Channel.TrySubmit(e) || !fe.Channel.WaitOutput(got, 5000) || !got.AsSpan().SequenceEqual(e)) { errors.Enqueue($"fe{i}: echo {n} failed"); return; }
                    n++;
                }
                counts[i] = n;
            }
            catch (Exception e) { errors.Enqueue($"fe{i}: {e.Message}"); ready.RemoveParticipant(); }
        }) { IsBackground = true }).ToList();
        threads.ForEach(t => t.Start());
        Volatile.Write(ref stopAt, long.MaxValue);
        ready.SignalAndWait(TimeSpan.FromSeconds(60));
        Volatile.Write(ref stopAt, Environment.TickCount64 + 3000);
        foreach (var t in threads) Assert.That(t.Join(TimeSpan.FromSeconds(30)), "front-end finished");
        Assert.That(errors, Is.Empty);
        var sorted = counts.Order().ToArray();
        double median = sorted[N / 2], slowest = sorted[0];
        TestContext.Out.WriteLine($"100 front-ends for 3 s: median {median / 3:F0} echoes/s, slowest {slowest / 3:F0}/s ({slowest / median:P0} of the median), fastest {sorted[^1] / 3:F0}/s, total {counts.Sum() / 3:F0}/s");
        Assert.That(slowest, Is.GreaterThanOrEqualTo(median / 2), "slowest >= half the median");
    }
}
