using System.Globalization;
using VmcBackend.Engine.Backend;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Engine.Faults;

/// <summary>
/// One fault of a plan, as written in a line of a faults file or given to <c>vmcctl inject</c>:
/// <c>NAME [key=value ...]</c> (docs/faults.md). The keys every fault takes: <c>when</c> (what arms
/// it: start, ready, open, close, message, now), <c>skip</c> (occurrences let through first),
/// <c>count</c> (how many times it acts; a number or <c>forever</c>), and for actions
/// <c>after-ms</c> (delay between the trigger and the action). Parse with <see cref="Parse"/>.
/// </summary>
public sealed class FaultRule
{
    public const int Forever = int.MaxValue;

    private FaultRule(FaultInfo info, string text)
    {
        Info = info;
        Text = text;
    }

    public FaultInfo Info { get; }
    public FaultKind Kind => Info.Kind;
    public bool IsAction => Info.IsAction;
    /// <summary>The rule as written, normalised to single spaces.</summary>
    public string Text { get; }

    public FaultTrigger When { get; private set; }
    public int Skip { get; private set; }
    public int Count { get; private set; } = 1;
    public int AfterMs { get; private set; }

    /// <summary>drop, delay: entries this matches (valid byte &lt;&lt; 8 | type), null for any.</summary>
    public int? EntryKind { get; private set; }
    public int Ms { get; private set; }
    public int Hmc { get; private set; }
    public int Buffers { get; private set; } = 1;
    public bool Last { get; private set; }
    public int Entries { get; private set; }
    public byte? MaxHmc { get; private set; }
    public ushort? Pool { get; private set; }
    public uint? Mtu { get; private set; }
    public ushort? Version { get; private set; }
    public byte? Status { get; private set; }
    public ushort? Buffer { get; private set; }
    /// <summary>signal-length: an absolute length, or (with <see cref="LengthIsMtuRelative"/>) MTU + this.</summary>
    public long Length { get; private set; }
    public bool LengthIsMtuRelative { get; private set; }
    public bool CopyAllow { get; private set; }
    public HcallReturn Rc { get; private set; }
    /// <summary>rdma: the direction it fails, null for any.</summary>
    public RdmaDirection? Direction { get; private set; }
    public int ReadyMs { get; private set; } = 500;

    // Runtime state, guarded by the owning plan's lock.
    internal FaultPlan? Owner;
    internal bool Armed;
    internal int Seen;
    internal int Fired;
    internal bool Exhausted => Fired >= Count;

    /// <summary>Times this rule has acted so far.</summary>
    public int TimesFired => Fired;

    /// <summary>Parses one rule. Throws <see cref="FormatException"/> naming what is wrong and what is allowed.</summary>
    public static FaultRule Parse(string line)
    {
        var words = line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        if (words.Length == 0) throw new FormatException("empty fault");
        var info = FaultCatalogue.Find(words[0])
            ?? throw new FormatException($"unknown fault '{words[0]}' (one of: {string.Join(", ", FaultCatalogue.All.Select(f => f.Name))})");
        var r = new FaultRule(info, string.Join(' ', words)) { When = info.IsAction ? FaultTrigger.Ready : FaultTrigger.Start };
        var seen = new HashSet<string>();
        foreach (var w in words.Skip(1))
        {
            int eq = w.IndexOf('=');
            if (eq <= 0 || eq == w.Length - 1) throw new FormatException($"'{w}': write key=value");
            string key = w[..eq], value = w[(eq + 1)..];
            if (!seen.Add(key)) throw new FormatException($"'{key}' given twice");
            r.Set(key, value);
        }
        r.Check(seen);
        return r;
    }

    private void Set(string key, string value)
    {
        switch (key)
        {
            case "when":
                When = value switch
                {
                    "start" when !IsAction => FaultTrigger.Start,
                    "ready" => FaultTrigger.Ready,
                    "open" => FaultTrigger.Open,
                    "close" => FaultTrigger.Close,
                    "message" => FaultTrigger.Message,
                    "now" => FaultTrigger.Now,
                    _ => throw new FormatException($"when={value}: use {(IsAction ? "" : "start, ")}ready, open, close, message or now"),
                };
                return;
            case "skip": Skip = Int(key, value, 0, 1_000_000); return;
            case "count": Count = value == "forever" ? Forever : Int(key, value, 1, 1_000_000); return;
            case "after-ms" when IsAction: AfterMs = Int(key, value, 0, 3_600_000); return;
        }
        if (!Info.Keys.Contains(key))
            throw new FormatException($"{Info.Name} takes no '{key}' (keys: {string.Join(", ", Info.Keys.Concat(IsAction ? ["when", "skip", "count", "after-ms"] : ["when", "skip", "count"]))})");
        switch (key)
        {
            case "type": EntryKind = EntryKindOf(value); break;
            case "ms": Ms = Int(key, value, 1, 3_600_000); break;
            case "hmc": Hmc = Int(key, value, 0, 1); break;
            case "buffers": Buffers = value == "all" ? 64 : Int(key, value, 1, 64); break;
            case "last": Last = Bool(key, value); break;
            case "entries": Entries = Int(key, value, 1, 1 << 20); break;
            case "max-hmc": MaxHmc = (byte)Int(key, value, 0, 255); break;
            case "pool": Pool = (ushort)Int(key, value, 0, 65535); break;
            case "mtu": Mtu = (uint)Long(key, value, 0, uint.MaxValue); break;
            case "version": Version = (ushort)Int(key, value, 0, 65535); break;
            case "status": Status = StatusOf(value); break;
            case "buffer": Buffer = (ushort)Int(key, value, 0, 65535); break;
            case "length":
                if (value.StartsWith("mtu", StringComparison.Ordinal))
                {
                    LengthIsMtuRelative = true;
                    Length = value.Length == 3 ? 0 : Long(key, value[3..].TrimStart('+'), -16384, 1 << 20);
                }
                else Length = Long(key, value, 0, uint.MaxValue);
                break;
            case "copy":
                CopyAllow = value switch { "allow" => true, "refuse" => false, _ => throw new FormatException($"copy={value}: use allow or refuse") };
                break;
            case "rc": Rc = RcOf(value); break;
            case "dir":
                Direction = value switch
                {
                    "to-hv" => RdmaDirection.LocalToRemote,
                    "to-guest" => RdmaDirection.RemoteToLocal,
                    "any" => null,
                    _ => throw new FormatException($"dir={value}: use to-hv (OPEN, write()), to-guest (receive) or any"),
                };
                break;
            case "ready-ms": ReadyMs = Int(key, value, 0, 3_600_000); break;
        }
    }

    private void Check(HashSet<string> given)
    {
        string[] required = Kind switch
        {
            FaultKind.Delay => ["ms"],
            FaultKind.Flood => ["entries"],
            FaultKind.CloseResponse => ["status"],
            FaultKind.SignalLength => ["length"],
            FaultKind.Rdma or FaultKind.RequestVmc or FaultKind.RegisterQueue => ["rc"],
            _ => [],
        };
        foreach (var k in required)
            if (!given.Contains(k)) throw new FormatException($"{Info.Name} needs {k}=");
        if (Kind == FaultKind.CapabilitiesResponse && MaxHmc == null && Pool == null && Mtu == null && Version == null && Status == null)
            throw new FormatException("cap-resp needs at least one of max-hmc=, pool=, mtu=, version=, status=");
        if (Kind == FaultKind.OpenResponse && (Status == null) == (Buffer == null))
            throw new FormatException("open-resp needs exactly one of status= (refuse the open) or buffer= (name another buffer id)");
        if (Kind == FaultKind.OpenResponse && Status == 0)
            throw new FormatException("open-resp status=0 is no fault: give a non-zero status");
        if (Kind == FaultKind.CloseResponse && Status == 0)
            throw new FormatException("close-resp status=0 is no fault: give a non-zero status");
        if (Kind == FaultKind.RegisterQueue && Rc == HcallReturn.Success)
            throw new FormatException("reg-crq rc=success is no fault: use resource, closed or another rc");
        if (given.Contains("ready-ms") && Rc != HcallReturn.Closed)
            throw new FormatException("ready-ms goes with reg-crq rc=closed only");
    }

    private static int Int(string key, string value, int min, int max) => (int)Long(key, value, min, max);

    private static long Long(string key, string value, long min, long max)
    {
        bool ok = value.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? long.TryParse(value.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out long v)
            : long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out v);
        if (!ok || v < min || v > max) throw new FormatException($"{key}={value}: want a number {min}..{max} (decimal or 0x hex)");
        return v;
    }

    private static bool Bool(string key, string value) => value switch
    {
        "yes" or "true" or "1" => true,
        "no" or "false" or "0" => false,
        _ => throw new FormatException($"{key}={value}: use yes or no"),
    };

    /// <summary>Entry types by name (valid byte &lt;&lt; 8 | type byte).</summary>
    public static readonly IReadOnlyDictionary<string, int> EntryTypes = new Dictionary<string, int>
    {
        ["init"] = 0xC001, ["init-resp"] = 0xC002,
        ["cap-resp"] = 0x8081, ["open-resp"] = 0x8082, ["close-resp"] = 0x8083,
        ["add-buf"] = 0x8004, ["rem-buf"] = 0x8005, ["signal"] = 0x8006,
    };

    private static int? EntryKindOf(string value)
    {
        if (value == "any") return null;
        if (EntryTypes.TryGetValue(value, out int k)) return k;
        throw new FormatException($"type={value}: use any, {string.Join(", ", EntryTypes.Keys)}");
    }

    private static readonly Dictionary<string, byte> Statuses = new()
    {
        ["success"] = 0, ["invalid-hmc-index"] = 1, ["general-failure"] = 1, ["invalid-buffer-id"] = 2,
        ["invalid-version"] = 2, ["closed-hmc"] = 3, ["interface-failure"] = 4, ["no-buffer"] = 5,
    };

    private static byte StatusOf(string value)
        => Statuses.TryGetValue(value, out byte s) ? s : (byte)Int("status", value, 0, 255);

    /// <summary>PAPR return codes by name; any other value is given as a number.</summary>
    public static readonly IReadOnlyDictionary<string, HcallReturn> ReturnCodes = new Dictionary<string, HcallReturn>
    {
        ["success"] = HcallReturn.Success, ["busy"] = HcallReturn.Busy, ["closed"] = HcallReturn.Closed,
        ["not-available"] = HcallReturn.NotAvailable, ["hardware"] = HcallReturn.Hardware, ["function"] = HcallReturn.Function,
        ["privilege"] = HcallReturn.Privilege, ["parameter"] = HcallReturn.Parameter, ["authority"] = HcallReturn.Authority,
        ["permission"] = HcallReturn.Permission, ["dropped"] = HcallReturn.Dropped, ["source-parm"] = HcallReturn.SourceParm,
        ["dest-parm"] = HcallReturn.DestParm, ["remote-parm"] = HcallReturn.RemoteParm, ["resource"] = HcallReturn.Resource,
        ["long-busy-1ms"] = (HcallReturn)9900, ["long-busy-10ms"] = (HcallReturn)9901, ["long-busy-100ms"] = (HcallReturn)9902,
        ["long-busy-1s"] = (HcallReturn)9903, ["long-busy-10s"] = (HcallReturn)9904, ["long-busy-100s"] = (HcallReturn)9905,
    };

    private static HcallReturn RcOf(string value)
        => ReturnCodes.TryGetValue(value, out var rc) ? rc : (HcallReturn)Long("rc", value, int.MinValue, int.MaxValue);

    public override string ToString() => Text;
}
