using System.Text;
using VmcBackend.Control.Trace;
using VmcBackend.Engine;
using VmcBackend.Engine.Router;
using VmcBackend.Engine.Sessions;

namespace VmcBackend.Control.Replay;

/// <summary>A trace that cannot be replayed (records lost, a VM that was already running, an unknown record): one line.</summary>
public sealed class NotReplayableException(string message) : Exception(message);

/// <summary>How one VM of a trace replayed.</summary>
public sealed record VmReplay(string Name, int Records, int Inputs, string? Divergence)
{
    public bool Identical => Divergence == null;
}

/// <summary>
/// Replays the guest side of a trace into fresh engines and compares every hypervisor output.
/// For each VM (from its VM_START, which must be the VM's connection): the same engine is built
/// from the recorded limits; each input (an entry the guest submitted, an hcall through the request
/// slot, a device reset, a retry, or a control-plane event: attach, detach, an attached program's
/// message) is performed again, in order; the engine's answer (entries for the guest, hcall
/// results, memory it wrote, messages, clock readings, channel failure) is encoded the way vmcd
/// encoded it and compared byte by byte with the records that followed the input. Guest memory the
/// engine reads and the clock are served from the recording, so a replay is exact.
/// </summary>
public static class Replayer
{
    public static List<VmReplay> Replay(TraceHeader header, IReadOnlyList<TraceRecord> records)
    {
        var text = new TraceText(header.ClockBaseNs);
        var byVm = new Dictionary<ushort, List<TraceRecord>>();
        var order = new List<ushort>();
        foreach (var r in records)
        {
            if (r.Type == RecordType.Lost)
                throw new NotReplayableException($"record {r.Index}: the trace lost {r.LostCount} records (its reader was too slow); only a complete trace can be replayed");
            if (!TraceFormat.IsInput(r.Type) && !TraceFormat.IsOutput(r.Type) && r.Type is not (RecordType.VmStart or RecordType.VmEnd))
                throw new NotReplayableException($"record {r.Index} has record type 0x{(byte)r.Type:X2}, which this vmcctl does not know");
            if (!byVm.TryGetValue(r.Vm, out var list)) { byVm[r.Vm] = list = []; order.Add(r.Vm); }
            list.Add(r);
        }
        if (order.Count == 0) throw new NotReplayableException("the trace holds no VM (was vmcctl trace running while a VM connected?)");
        var results = new List<VmReplay>();
        foreach (var vm in order) results.Add(ReplayVm(byVm[vm], text));
        return results;
    }

    private static VmReplay ReplayVm(List<TraceRecord> list, TraceText text)
    {
        var start = list[0];
        if (start.Type != RecordType.VmStart)
            throw new NotReplayableException($"record {start.Index}: VM #{start.Vm} has no VM_START before it");
        var info = start.VmStart;
        if ((start.Flags & (byte)VmStartFlags.Joined) != 0)
            throw new NotReplayableException($"VM {info.Name} was already running when the trace began: start vmcctl trace before the VM connects to replay it");
        var limits = new VmcLimits
        {
            MaxMtu = info.MaxMtu, PoolSize = info.PoolSize, MaxHmcs = info.MaxHmcs, DrcIndex = info.DrcIndex, OutputBacklog = info.OutputBacklog,
        };
        var clock = new ScriptedClock(info.TimestampFrequency);
        var memory = new ScriptedMemory();
        var observer = new ReplayObserver(start.Vm);
        VmcEngine engine;
        try { engine = (VmcEngine)VmcEngine.Factory(limits, handlers: _ => new HmcCommandRouter(), time: clock)(new ReplayFrontEnd(memory)); }
        catch (ArgumentOutOfRangeException e)
        {
            throw new NotReplayableException($"VM {info.Name}: its VM_START has limits vmcd does not run with ({e.Message.Split('\n')[0]})");
        }
        engine.Observer = observer;
        var saved = new IHmcSessionHandler?[limits.MaxHmcs];
        var attached = new ReplayHandler?[limits.MaxHmcs];
        int inputs = 0;

        for (int i = 1; i < list.Count;)
        {
            var input = list[i];
            if (input.Type == RecordType.VmEnd)
            {
                if (i + 1 < list.Count) throw new NotReplayableException($"record {list[i + 1].Index}: VM {info.Name} has records after its VM_END");
                break;
            }
            if (!TraceFormat.IsInput(input.Type))
                throw new NotReplayableException($"record {input.Index} ({TraceReader.Name(input.Type)}) of VM {info.Name} answers no input");
            int j = i + 1;
            while (j < list.Count && TraceFormat.IsOutput(list[j].Type)) j++;
            var expected = list.GetRange(i, j - i);
            memory.Load(expected);
            clock.Load(expected);
            observer.Actual.Clear();
            Apply(engine, observer, input, saved, attached);
            inputs++;
            if (Compare(expected, observer.Actual, text) is { } divergence)
                return new VmReplay(info.Name, list.Count, inputs, divergence);
            i = j;
        }
        return new VmReplay(info.Name, list.Count, inputs, null);
    }

    /// <summary>Performs one recorded input on the engine, as vmcd's transport or control plane did.</summary>
    private static void Apply(VmcEngine engine, ReplayObserver observer, TraceRecord r, IHmcSessionHandler?[] saved, ReplayHandler?[] attached)
    {
        switch (r.Type)
        {
            case RecordType.Submit: engine.SubmitEntry(r.Entry); break;
            case RecordType.RegCrq: engine.RegisterQueue(r.RegCrq.Entries, r.RegCrq.Reconnect); break;
            case RecordType.FreeCrq: engine.FreeQueue(); break;
            case RecordType.CopyRdma:
                var (dir, length, remote, segs) = r.CopyRdma;
                engine.CopyRdma(dir, remote, length, segs);
                break;
            case RecordType.RequestVmc: engine.RequestVmc(out _); break;
            case RecordType.Reset: engine.Reset(); break;
            case RecordType.Poll: engine.Poll(); break;
            case RecordType.Attach:
            {
                var (hmc, pid) = r.Attach;
                observer.Add(observer.Encoder.Attach(hmc, pid));
                if ((uint)hmc >= (uint)saved.Length || attached[hmc] != null) break;
                var h = attached[hmc] = new ReplayHandler();
                saved[hmc] = engine.SetHandler(hmc, h);
                break;
            }
            case RecordType.Detach:
            {
                var (hmc, reason) = r.Detach;
                observer.Add(observer.Encoder.Detach(hmc, reason));
                if ((uint)hmc >= (uint)saved.Length || attached[hmc] == null) break;
                engine.SetHandler(hmc, saved[hmc]!);
                attached[hmc] = null;
                break;
            }
            case RecordType.HostSend:
            {
                var (hmc, message) = r.HostSend;
                observer.Add(observer.Encoder.HostSend(hmc, message.Span));
                bool accepted = false;
                var h = (uint)hmc < (uint)attached.Length ? attached[hmc] : null;
                engine.HostCall(() => accepted = h?.Output?.TrySend(message.Span) ?? false);
                observer.Add(observer.Encoder.Result(accepted ? 0 : 1, 0));
                break;
            }
        }
    }

    /// <summary>Null when the replayed records equal the recorded ones (time aside), else a readable diff.</summary>
    private static string? Compare(List<TraceRecord> expected, List<byte[]> actual, TraceText text)
    {
        int n = Math.Max(expected.Count, actual.Count);
        for (int k = 0; k < n; k++)
        {
            byte[]? want = k < expected.Count ? expected[k].Encode(withTime: false) : null;
            byte[]? got = k < actual.Count ? actual[k] : null;
            if (want != null && got != null && want.AsSpan().SequenceEqual(got)) continue;
            var sb = new StringBuilder();
            var at = k < expected.Count ? expected[k] : expected[^1];
            sb.Append($"diverges at record {at.Index}{(k < expected.Count ? "" : " (after it)")}, in the answer to record {expected[0].Index}:\n");
            sb.Append("  input     ").Append(text.Format(expected[0]).TrimStart()).Append('\n');
            sb.Append("  recorded  ").Append(want != null ? text.Format(expected[k]).TrimStart() : "(nothing more)").Append('\n');
            sb.Append("  replayed  ").Append(got != null ? Describe(got) : "(nothing more)");
            return sb.ToString();
        }
        return null;
    }

    private static string Describe(byte[] encoded)
    {
        var (who, what) = TraceText.Describe(TraceRecord.Decode(encoded));
        return $"{who,-6} {what}";
    }
}
