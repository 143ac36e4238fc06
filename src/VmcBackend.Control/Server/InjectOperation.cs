using System.Text.Json;
using VmcBackend.Control.Protocol;
using VmcBackend.Engine.Faults;

namespace VmcBackend.Control.Server;

/// <summary>
/// The control channel's <c>inject</c> operation (vmcctl inject): one fault, in the faults-file
/// format (docs/faults.md), added to one VM's engine with <see cref="Engine.VmcEngine.InjectFault"/>
/// on the VM's connection thread. An action without <c>when=</c> acts at once (<c>when=now</c>);
/// a point fault waits for its next occurrence. The response says what the fault did before the
/// engine returned (nothing yet for one that waits). Faults change what the engine does, so a
/// trace recorded across an injection does not replay identically after it.
/// </summary>
internal static class InjectOperation
{
    public static async Task<ControlReply> Handle(ControlContext c)
    {
        if (c.Registry.Find(c.Request.Vm, out string? error) is not { } vm) return new(ControlResponse.Refused(ControlErrors.UnknownVm, error!));
        string? text = c.Request.Args is { ValueKind: JsonValueKind.Object } a && a.TryGetProperty("fault", out var f) && f.ValueKind == JsonValueKind.String
            ? f.GetString() : null;
        if (string.IsNullOrWhiteSpace(text))
            return new(ControlResponse.Refused(ControlErrors.BadRequest, "inject needs args {\"fault\": \"FAULT [key=value ...]\"} (docs/faults.md)"));
        FaultRule rule;
        try
        {
            rule = FaultRule.Parse(text);
            if (rule.IsAction && !text.Split(' ', '\t').Any(w => w.StartsWith("when=", StringComparison.Ordinal)))
                rule = FaultRule.Parse(text + " when=now");
        }
        catch (FormatException e) { return new(ControlResponse.Refused(ControlErrors.BadRequest, $"fault '{text}': {e.Message} (docs/faults.md)")); }
        IReadOnlyList<FaultFiring> fired;
        try { fired = await vm.Run(engine => engine.InjectFault(rule)).WaitAsync(ControlServer.VmTimeout).ConfigureAwait(false); }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
            return new(ControlResponse.Refused(ControlErrors.Unavailable, $"{vm.Name} did not answer (it disconnected or is stuck); try again"));
        }
        vm.Log.Information("fault {Rule} injected by control client pid {Pid}", rule.Text, c.ClientPid);
        return new(new ControlResponse
        {
            Ok = true,
            Fault = new FaultReport(vm.Name, rule.Text, [.. fired.Select(x => x.Detail)]),
        });
    }
}
