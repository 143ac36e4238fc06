using System.CommandLine;
using VmcBackend.Control.Replay;
using VmcBackend.Control.Trace;

namespace Vmcctl.Commands;

/// <summary>
/// <c>vmcctl replay FILE</c>: re-drives the guest side of a recorded trace into fresh engines and
/// compares every hypervisor output. Exit 0 identical, 1 diverged (with the first difference of
/// each VM), 2 the file cannot be replayed (another version, truncated, records lost).
/// </summary>
internal static class ReplayCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("FILE") { Description = "A trace recorded with vmcctl trace --write" };
        var cmd = new Command("replay", "Replay a recorded trace against a fresh engine and compare every hypervisor output with the recording") { file };
        cmd.SetAction(r =>
        {
            string path = r.GetValue(file)!;
            List<VmReplay> results;
            try
            {
                var (header, records) = TraceReader.ReadFile(path);
                results = Replayer.Replay(header, records);
            }
            catch (TraceFormatException e) { return Exit.From(e); }
            catch (NotReplayableException e) { return Exit.Error($"{path} cannot be replayed: {e.Message}", Exit.Usage); }
            catch (InvalidDataException e) { return Exit.Error($"{path} is a damaged gzip file: {e.Message}", Exit.Usage); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return Exit.Error($"cannot read {path}: {e.Message}", Exit.Usage); }
            int diverged = 0;
            foreach (var vm in results)
            {
                if (vm.Identical) Console.Out.WriteLine($"{vm.Name}: {vm.Inputs} inputs replayed, {vm.Records} records, every output identical");
                else
                {
                    diverged++;
                    Console.Out.WriteLine($"{vm.Name}: {vm.Divergence}");
                }
            }
            if (diverged == 0) return Exit.Ok;
            return Exit.Error($"{path}: {diverged} of {results.Count} VM{(results.Count == 1 ? "" : "s")} diverged from the recording", Exit.Failed);
        });
        return cmd;
    }
}
