using VmcBackend.Engine.Backend;
using VmcBackend.Engine.Buffers;
using VmcBackend.Engine.Memory;
using VmcBackend.Wire.Hcall;

namespace VmcBackend.Engine.Rdma;

/// <summary>
/// H_COPY_RDMA: copies between a range of the remote window and a list of guest-physical
/// segments. The remote range must lie inside one buffer the partition holds, within the
/// negotiated MTU (its <see cref="BufferPool"/> decides); every guest segment is bounds-checked by
/// <see cref="IGuestMemory"/>. rcs: segment lengths that do not add up H_PARAMETER; remote range
/// outside the window H_REMOTE_PARM; not inside a buffer the partition holds H_PERMISSION; local
/// segment outside guest memory H_SOURCE_PARM when the guest is the source, H_DEST_PARM when it is
/// the destination.
/// </summary>
internal sealed class RdmaService(RemoteWindow window, BufferPool[] pools)
{
    public HcallReturn Copy(IGuestMemory memory, RdmaDirection direction, ulong remoteIoba, ulong length, ReadOnlySpan<GuestSegment> local)
    {
        if (direction is not (RdmaDirection.LocalToRemote or RdmaDirection.RemoteToLocal)) return HcallReturn.Parameter;
        ulong sum = 0;
        foreach (var s in local)
        {
            if (s.Length > length - sum) return HcallReturn.Parameter;   // more than is left: never overflows
            sum += s.Length;
        }
        if (sum != length) return HcallReturn.Parameter;
        if (length == 0) return HcallReturn.Success;
        if (!window.TryLocate(remoteIoba, length, out int index, out int id, out int offset)) return HcallReturn.RemoteParm;
        if (!pools[index].RdmaAllowed(id, offset, length)) return HcallReturn.Permission;

        var remote = window.Range(remoteIoba, (int)length);
        bool toRemote = direction == RdmaDirection.LocalToRemote;
        int at = 0;
        foreach (var s in local)
        {
            var part = remote.Slice(at, (int)s.Length);
            bool ok = toRemote ? memory.TryRead(s.Address, part) : memory.TryWrite(s.Address, part);
            if (!ok) return toRemote ? HcallReturn.SourceParm : HcallReturn.DestParm;
            at += (int)s.Length;
        }
        return HcallReturn.Success;
    }
}
