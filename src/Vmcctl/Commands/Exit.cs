using System.Runtime.InteropServices;
using VmcBackend.Control.Client;
using VmcBackend.Control.Trace;

namespace Vmcctl.Commands;

/// <summary>vmcctl's exit codes and its one-line error reports.</summary>
internal static class Exit
{
    public const int Ok = 0, Failed = 1, Usage = 2, Refused = 3;

    public static int Error(string message, int code)
    {
        Console.Error.WriteLine($"vmcctl: {message}");
        return code;
    }

    /// <summary>The exit code of a failed control request, with its line on stderr.</summary>
    public static int From(ControlException e) => Error(e.Message, e.Failure switch
    {
        ControlFailure.BadInput => Usage,
        ControlFailure.Unavailable => Failed,
        _ => Refused,
    });

    public static int From(TraceFormatException e) => Error(e.Message, Usage);

    /// <summary>Connects, runs <paramref name="body"/>, and turns every expected failure into its line and exit code.</summary>
    public static async Task<int> WithClient(string path, CancellationToken ct, Func<ControlClient, CancellationToken, Task<int>> body)
    {
        try
        {
            await using var client = await ControlClient.ConnectAsync(path, ct);
            return await body(client, ct);
        }
        catch (ControlException e) { return From(e); }
        catch (OperationCanceledException) { return Ok; }
    }

    /// <summary>A token cancelled by SIGINT or SIGTERM (the command then ends cleanly).</summary>
    public static CancellationTokenSource OnSignals(out IDisposable registrations)
    {
        var cts = new CancellationTokenSource();
        var a = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; cts.Cancel(); });
        var b = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
        registrations = new Both(a, b);
        return cts;
    }

    private sealed class Both(IDisposable a, IDisposable b) : IDisposable
    {
        public void Dispose() { a.Dispose(); b.Dispose(); }
    }
}
