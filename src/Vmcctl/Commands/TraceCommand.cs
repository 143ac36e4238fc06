using System.CommandLine;
using System.IO.Pipelines;
using VmcBackend.Control.Client;
using VmcBackend.Control.Trace;

namespace Vmcctl.Commands;

/// <summary>
/// <c>vmcctl trace [--vm VM] [--write FILE] [--stop-after N]</c>: a live decoded trace of what crosses
/// the VMC (or a recording of it); <c>vmcctl trace --read FILE</c> decodes a recorded file.
/// </summary>
internal static class TraceCommand
{
    public static Command Create(Option<string> control)
    {
        var vm = new Option<string?>("--vm") { Description = "Only this VM (name or front-end pid); default every VM, including those that connect later", HelpName = "VM" };
        var write = new Option<string?>("--write", "-w") { Description = "Record a trace file instead of printing (format in docs/control.md)", HelpName = "FILE" };
        var read = new Option<string?>("--read", "-r") { Description = "Decode a recorded trace file (no vmcd needed)", HelpName = "FILE" };
        var stopAfter = new Option<int?>("--stop-after") { Description = "Stop once this many VMs have disconnected", HelpName = "N" };
        var cmd = new Command("trace", "Show every CRQ entry both ways, each hcall and its rc, RDMA, router headers and control events, one line each (like tcpdump)")
        {
            vm, write, read, stopAfter,
        };
        cmd.SetAction(async (r, ct) =>
        {
            if (r.GetValue(read) is { } file)
            {
                if (r.GetValue(write) != null || r.GetValue(vm) != null) return Exit.Error("--read decodes a file: it takes no --write or --vm", Exit.Usage);
                return Decode(file);
            }
            if (r.GetValue(stopAfter) is < 1) return Exit.Error("--stop-after needs a count of 1 or more", Exit.Usage);
            using var signals = Exit.OnSignals(out var registrations);
            using (registrations)
            {
                using var both = CancellationTokenSource.CreateLinkedTokenSource(ct, signals.Token);
                return await Exit.WithClient(r.GetValue(control)!, both.Token, (client, token) => Follow(client, r.GetValue(vm), r.GetValue(write), r.GetValue(stopAfter), token));
            }
        });
        return cmd;
    }

    private static int Decode(string file)
    {
        try
        {
            using var f = TraceReader.OpenFile(file);
            var reader = new TraceReader(f, file);
            var text = new TraceText(reader.Header.ClockBaseNs);
            Console.Out.WriteLine($"# {file}: trace format {reader.Header.Version}, started {reader.Header.StartedAt:u}");
            while (reader.TryRead(out var rec)) Console.Out.WriteLine(text.Format(rec));
            return Exit.Ok;
        }
        catch (TraceFormatException e) { return Exit.From(e); }
        catch (IOException e) { return Exit.Error($"cannot read {file}: {e.Message}", Exit.Usage); }
        catch (UnauthorizedAccessException e) { return Exit.Error($"cannot read {file}: {e.Message}", Exit.Usage); }
        catch (InvalidDataException e) { return Exit.Error($"{file} is a damaged gzip file: {e.Message}", Exit.Usage); }
    }

    private static async Task<int> Follow(ControlClient client, string? vm, string? writePath, int? stopAfter, CancellationToken ct)
    {
        FileStream? file = null;
        if (writePath != null)
        {
            try { file = new FileStream(writePath, FileMode.Create, FileAccess.Write, FileShare.Read); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return Exit.Error($"cannot write {writePath}: {e.Message}", Exit.Usage); }
        }
        await using var fileScope = file;
        var channel = await client.TraceAsync(vm, ct);
        // The reader blocks on the channel; it runs on its own thread, and closing the channel ends it.
        await using var stream = channel.Input.AsStream();
        using var stop = ct.Register(channel.Dispose);
        long records = 0, lost = 0;
        int ended = 0;
        string? error = null;
        await Task.Run(() =>
        {
            try
            {
                var reader = new TraceReader(stream, "the trace channel");
                if (file != null)
                {
                    var header = new byte[TraceFormat.FileHeaderSize];
                    TraceFormat.WriteFileHeader(header, reader.Header.ClockBaseNs, reader.Header.UnixNs);
                    file.Write(header);
                    file.Flush();
                }
                Console.Error.WriteLine($"vmcctl: tracing {vm ?? "every VM"}{(file != null ? $" into {writePath}" : "")} (Ctrl-C stops)");
                var text = new TraceText(reader.Header.ClockBaseNs);
                while (reader.TryRead(out var rec))
                {
                    records++;
                    if (rec.Type == RecordType.Lost) lost += rec.LostCount;
                    if (file != null) file.Write(rec.Encode());
                    else Console.Out.WriteLine(text.Format(rec));
                    if (rec.Type == RecordType.VmEnd && ++ended == stopAfter) break;
                }
            }
            catch (TraceFormatException e) { if (!ct.IsCancellationRequested) error = e.Message; }
            catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException) { }
        }, CancellationToken.None);
        file?.Flush();
        if (error != null) return Exit.Error(error, Exit.Failed);
        string summary = $"{records} records{(lost > 0 ? $", {lost} LOST (the reader was too slow; see docs/control.md)" : "")}{(file != null ? $" written to {writePath}" : "")}";
        Console.Error.WriteLine($"vmcctl: {summary}");
        if (!ct.IsCancellationRequested && ended != stopAfter) return Exit.Error("vmcd ended the trace (it stopped or restarted)", Exit.Failed);
        return Exit.Ok;
    }
}
