using System.Diagnostics;

namespace VmcBackend.Transport.Tests;

/// <summary>The real vmcd binary (built with this project) on a temporary socket, measured through /proc.</summary>
internal sealed class VmcdProcess : IDisposable
{
    private readonly Process _p;
    private readonly string _dir = Directory.CreateTempSubdirectory("vmcd-proc").FullName;

    private VmcdProcess(string binary)
    {
        Socket = Path.Combine(_dir, "vmcd.sock");
        Log = Path.Combine(_dir, "vmcd.log");
        _p = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", $"exec '{binary}' --socket '{Socket}' --log-level Warning 2>'{Log}' >&2"]))!;
        if (!ServerFixture.WaitFor(() => File.Exists(Socket), 10000)) Assert.Fail($"vmcd did not create its socket: {File.ReadAllText(Log)}");
    }

    public string Socket { get; }
    public string Log { get; }

    /// <summary>src/Vmcd's build output for this test build's configuration.</summary>
    public static VmcdProcess Start()
    {
        string bin = AppContext.BaseDirectory;                       // tests/VmcBackend.Transport.Tests/bin/<Configuration>/net10.0/
        string config = new DirectoryInfo(bin).Parent!.Name;
        string repo = Path.GetFullPath(Path.Combine(bin, "../../../../.."));
        string vmcd = Path.Combine(repo, "src/Vmcd/bin", config, "net10.0/vmcd");
        if (!File.Exists(vmcd)) Assert.Fail($"{vmcd} is missing: build the solution first (dotnet build VmcBackend.sln -c {config})");
        return new VmcdProcess(vmcd);
    }

    public readonly record struct Resources(long RssKiB, int Fds, int Threads)
    {
        public bool Within(Resources start, double fraction) =>
            RssKiB <= start.RssKiB * (1 + fraction) && Fds <= start.Fds * (1 + fraction) && Threads <= start.Threads * (1 + fraction);
    }

    public Resources Measure()
    {
        long rss = 0;
        int threads = 0;
        foreach (var line in File.ReadLines($"/proc/{_p.Id}/status"))
        {
            var f = line.Split((char[])['\t', ' '], StringSplitOptions.RemoveEmptyEntries);
            if (f[0] == "VmRSS:") rss = long.Parse(f[1]);
            if (f[0] == "Threads:") threads = int.Parse(f[1]);
        }
        return new Resources(rss, Directory.GetFiles($"/proc/{_p.Id}/fd").Length, threads);
    }

    public string[] ErrorLines() => File.ReadAllLines(Log).Where(l => l.Contains(" ERR ") || l.Contains(" FTL ")).ToArray();

    public void Dispose()
    {
        try { _p.Kill(); } catch (InvalidOperationException) { }
        _p.WaitForExit();
        _p.Dispose();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}
