using System.Runtime.InteropServices;
using Tmds.Linux;

namespace VmcBackend.Transport.Interop;

/// <summary>
/// A file descriptor with exactly one owner: the object that holds this handle closes it, once.
/// Received fds (SCM_RIGHTS), eventfds and memfds are wrapped the moment they exist, so every
/// path (malformed frame, refused table, disconnect) closes them; nothing keeps a raw number
/// that could later name someone else's descriptor.
/// </summary>
public sealed class OwnedFd : SafeHandle
{
    public OwnedFd(int fd) : base(invalidHandleValue: -1, ownsHandle: true) => SetHandle(fd);

    public override bool IsInvalid => (int)handle < 0;

    /// <summary>The descriptor number, valid while this object is alive and not disposed.</summary>
    public int Fd => IsClosed ? -1 : (int)handle;

    protected override bool ReleaseHandle() => LibC.close((int)handle) == 0;
}

/// <summary>errno as text for log lines and exceptions.</summary>
public static class Errno
{
    public static int Last => LibC.errno;

    public static unsafe string Describe(int errno)
    {
        byte* buf = stackalloc byte[128];
        // The XSI strerror_r returns 0 and fills the buffer.
        if (LibC.strerror_r(errno, buf, 128) != 0) return $"errno {errno}";
        return $"{Marshal.PtrToStringUTF8((nint)buf)} (errno {errno})";
    }
}
