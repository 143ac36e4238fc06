using System.CommandLine;
using Vmcctl.Commands;

// vmcctl: watch, record, replay and drive a live VMC through vmcd's control socket (docs/control.md).
// Exit codes: 0 done; 1 a replay diverged, or vmcd/the VM went away meanwhile; 2 bad command line or
// input (unknown VM or HMC, unreadable trace); 3 vmcd unreachable or it refused (permissions,
// another uid, HMC attached by another client).

var control = new Option<string>("--control")
{
    Description = "vmcd's control socket (default: $VMCCTL_CONTROL, else /run/vmcd/vmcd.sock.ctl; vmcd makes <socket>.ctl)",
    HelpName = "PATH",
    Recursive = true,
    DefaultValueFactory = _ => Environment.GetEnvironmentVariable("VMCCTL_CONTROL") is { Length: > 0 } env ? env : "/run/vmcd/vmcd.sock.ctl",
};
var root = new RootCommand("vmcctl: watch, record, replay and drive the Virtual Management Channel of VMs served by vmcd")
{
    control,
    StatusCommand.Create(control),
    TraceCommand.Create(control),
    ReplayCommand.Create(),
    AttachCommand.Create(control),
    InjectCommand.Create(control),
};
var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    Console.Error.WriteLine($"vmcctl: {parsed.Errors[0].Message.ReplaceLineEndings(" ")} (see vmcctl --help)");
    return Exit.Usage;
}
return await parsed.InvokeAsync();
