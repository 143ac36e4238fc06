namespace VmcBackend.Engine.Faults;

/// <summary>One time a fault acted: when, which rule, what it did.</summary>
public readonly record struct FaultFiring(DateTimeOffset Time, string Rule, string Detail);

/// <summary>
/// The faults one vmcd applies: the rules of a faults file (<see cref="Parse"/>), plus any added
/// later (<see cref="Add"/>, vmcctl inject). One plan serves every engine the factory creates, so a
/// rule that fired stays spent across reconnects (a transport event does not repeat on the new
/// connection). Thread-safe: engines of different connections consult it concurrently. An engine
/// without a plan never consults anything: the default vmcd stays faithful at no cost.
/// </summary>
public sealed class FaultPlan
{
    public const int HistoryLimit = 4096;
    private readonly object _lock = new();
    private readonly List<FaultRule> _rules = [];
    private readonly List<FaultFiring> _history = [];
    private readonly TimeProvider _time;
    private int _version;

    public FaultPlan(IEnumerable<FaultRule>? rules = null, TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        foreach (var r in rules ?? []) Add(r);
    }

    /// <summary>Parses a faults file: one rule per line (<see cref="FaultRule.Parse"/>); '#' starts a
    /// comment, blank lines are ignored. Throws <see cref="FormatException"/> with the line number.</summary>
    public static FaultPlan Parse(string text, TimeProvider? time = null)
    {
        var rules = new List<FaultRule>();
        int n = 0;
        foreach (var raw in text.Split('\n'))
        {
            n++;
            int hash = raw.IndexOf('#');
            var line = (hash >= 0 ? raw[..hash] : raw).Trim();
            if (line.Length == 0) continue;
            try { rules.Add(FaultRule.Parse(line)); }
            catch (FormatException e) { throw new FormatException($"line {n}: {e.Message}", e); }
        }
        return new FaultPlan(rules, time);
    }

    /// <summary>Adds a rule; it is armed at once when its trigger is <c>start</c> or <c>now</c>.</summary>
    public void Add(FaultRule rule)
    {
        lock (_lock)
        {
            if (rule.Owner != null) throw new ArgumentException("the rule is already in a plan", nameof(rule));
            rule.Owner = this;
            rule.Armed = rule.When is FaultTrigger.Start or FaultTrigger.Now;
            _rules.Add(rule);
            _version++;
        }
    }

    /// <summary>The rules, in order.</summary>
    public IReadOnlyList<FaultRule> Rules { get { lock (_lock) return [.. _rules]; } }

    /// <summary>Every time a fault acted, oldest first (the last <see cref="HistoryLimit"/>).</summary>
    public IReadOnlyList<FaultFiring> History { get { lock (_lock) return [.. _history]; } }

    /// <summary>Changes whenever a rule is added (engines then look for <c>now</c> actions).</summary>
    internal int Version => Volatile.Read(ref _version);

    /// <summary>A point fault of <paramref name="kind"/> at one of its occurrences: the first armed,
    /// unspent rule that <paramref name="match"/>es counts it, and acts on it once its skips are used
    /// up. Returns the rule that acts, or null.</summary>
    internal FaultRule? TakePoint(FaultKind kind, Func<FaultRule, bool>? match = null)
    {
        lock (_lock)
        {
            foreach (var r in _rules)
            {
                if (r.Kind != kind || !r.Armed || r.Exhausted || (match != null && !match(r))) continue;
                if (++r.Seen <= r.Skip) return null;
                r.Fired++;
                return r;
            }
            return null;
        }
    }

    /// <summary><paramref name="trigger"/> happened: arms point rules waiting for it and adds the
    /// actions it fires (after their skips) to <paramref name="due"/>.</summary>
    internal void Trigger(FaultTrigger trigger, List<FaultRule> due)
    {
        lock (_lock)
        {
            foreach (var r in _rules)
            {
                if (r.When != trigger || r.Exhausted) continue;
                if (!r.IsAction) { r.Armed = true; continue; }
                if (trigger == FaultTrigger.Now)
                {
                    if (!r.Armed) continue;
                    r.Armed = false;                 // an injected action acts once, on one engine
                }
                else if (++r.Seen <= r.Skip) continue;
                r.Fired++;
                due.Add(r);
            }
        }
    }

    internal void Record(FaultRule rule, string detail)
    {
        lock (_lock)
        {
            if (_history.Count == HistoryLimit) _history.RemoveAt(0);
            _history.Add(new FaultFiring(_time.GetUtcNow(), rule.Text, detail));
        }
    }
}
