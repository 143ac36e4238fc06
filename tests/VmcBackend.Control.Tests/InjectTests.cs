using System.Text.Json;
using VmcBackend.Testing;
using VmcBackend.Control.Client;
using VmcBackend.Control.Protocol;

namespace VmcBackend.Control.Tests;

/// <summary>vmcctl inject's operation over the real control socket, against a reference guest on the data socket.</summary>
public class InjectTests
{
    private static async Task<ControlResponse> Inject(ControlClient c, string fault, string? vm = null)
    {
        using var args = JsonDocument.Parse(JsonSerializer.Serialize(fault));
        var obj = JsonDocument.Parse($"{{\"fault\":{args.RootElement.GetRawText()}}}");
        return await c.RequestAsync(new ControlRequest { Op = ControlOps.Inject, Vm = vm, Args = obj.RootElement.Clone() });
    }

    [Test]
    public async Task APointFaultWaitsForItsPointThenActsOnce()
    {
        using var rig = new ControlRig();
        var g = rig.Guest();
        await using var c = await rig.Client();
        Assert.That(g.Partition.RequestVmc(out uint drc), Is.EqualTo(0), "faithful before");
        var r = ControlClient.Check(await Inject(c, "request-vmc rc=hardware"));
        Assert.That((r.Fault!.Vm, r.Fault.Rule, r.Fault.Fired.Count), Is.EqualTo(("vm1", "request-vmc rc=hardware", 0)), "armed, nothing done yet");
        Assert.That(g.Partition.RequestVmc(out _), Is.EqualTo(-Errno.EIO), "the next H_REQUEST_VMC fails with H_HARDWARE: EIO");
        Assert.That(g.Partition.RequestVmc(out drc), Is.EqualTo(0), "count=1: faithful again");
        Assert.That(drc, Is.EqualTo(0x81000001u));
        Assert.That(rig.Collector.Count("fault request-vmc rc=hardware: H_REQUEST_VMC returns"), Is.EqualTo(1));
        Assert.That(rig.Collector.Count("injected by control client pid"), Is.EqualTo(1));
    }

    [Test]
    public async Task AnActionWithoutWhenActsAtOnceAndTheGuestSeesATransportEvent()
    {
        using var rig = new ControlRig();
        var g = rig.Guest();
        var f = g.OpenRouter("inject-hmc");
        await using var c = await rig.Client();
        var r = ControlClient.Check(await Inject(c, "transport-event"));
        Assert.That(r.Fault!.Rule, Is.EqualTo("transport-event when=now"));
        Assert.That(r.Fault.Fired, Has.Count.EqualTo(1));
        Assert.That(r.Fault.Fired[0], Does.StartWith("CHANNEL_FAILED sent"));
        Assert.That(ControlRig.WaitFor(() => { g.Device.Run(); g.Partition.RunPending(); return g.Partition.TransportEvents == 1; }),
            "the front-end delivered a transport event to the partition");
        Assert.That(g.Partition.Read(f, new byte[4096]), Is.EqualTo(-Errno.EBADFD), "the open session's reader gets EBADFD");
        Assert.That(rig.Collector.Count("fault transport-event when=now: CHANNEL_FAILED sent"), Is.EqualTo(1));
    }

    [Test]
    public async Task ABadFaultIsRefusedInOneLineAndTheConnectionGoesOn()
    {
        using var rig = new ControlRig();
        rig.Guest();
        await using var c = await rig.Client();
        var bogus = await Inject(c, "bogus x=1");
        Assert.That((bogus.Ok, bogus.Code), Is.EqualTo((false, ControlErrors.BadRequest)));
        Assert.That(bogus.Error, Does.StartWith("fault 'bogus x=1': unknown fault 'bogus' (one of: transport-event, "));
        var key = await Inject(c, "rdma colour=red");
        Assert.That(key.Error, Does.Contain("rdma takes no 'colour'"));
        var noArgs = await c.RequestAsync(new ControlRequest { Op = ControlOps.Inject });
        Assert.That((noArgs.Code, noArgs.Error), Is.EqualTo((ControlErrors.BadRequest, "inject needs args {\"fault\": \"FAULT [key=value ...]\"} (docs/faults.md)")));
        var noVm = await Inject(c, "transport-event", vm: "vm9");
        Assert.That(noVm.Code, Is.EqualTo(ControlErrors.UnknownVm));
        Assert.That((await c.StatusAsync()).Vms[0].State, Is.EqualTo("ready"), "nothing was injected");
    }
}
