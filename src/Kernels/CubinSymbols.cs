using System.Buffers.Binary;
using System.Text;

namespace Engine.Kernels;

/// <summary>
/// Lists the kernels a compiled CUBIN defines. A CUBIN is an ELF64 file: its symbol table
/// (section type SHT_SYMTAB) names every function; kernels are the global function symbols
/// (STT_FUNC, STB_GLOBAL).
/// </summary>
public static class CubinSymbols
{
    public static bool IsElf(ReadOnlySpan<byte> image) =>
        image.Length > 64 && image[0] == 0x7F && image[1] == (byte)'E' && image[2] == (byte)'L' && image[3] == (byte)'F';

    public static IReadOnlyList<string> GlobalFunctions(byte[] image)
    {
        var span = image.AsSpan();
        if (!IsElf(span) || span[4] != 2) throw new EngineException("not an ELF64 CUBIN image");
        ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(span[0x28..]);
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3A..]);
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3C..]);
        var names = new List<string>();
        for (int s = 0; s < shnum; s++)
        {
            var sh = span[(int)((long)shoff + (long)s * shentsize)..];
            if (BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]) != 2) continue; // SHT_SYMTAB
            long off = (long)BinaryPrimitives.ReadUInt64LittleEndian(sh[0x18..]);
            long size = (long)BinaryPrimitives.ReadUInt64LittleEndian(sh[0x20..]);
            int link = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[0x28..]);
            long entsize = (long)BinaryPrimitives.ReadUInt64LittleEndian(sh[0x38..]);
            var strh = span[(int)((long)shoff + (long)link * shentsize)..];
            long stroff = (long)BinaryPrimitives.ReadUInt64LittleEndian(strh[0x18..]);
            if (entsize <= 0) entsize = 24;
            for (long e = off; e + 24 <= off + size; e += entsize)
            {
                var sym = span[(int)e..];
                byte info = sym[4];
                if ((info & 0xF) != 2 || (info >> 4) != 1) continue; // STT_FUNC, STB_GLOBAL
                int nameOff = (int)BinaryPrimitives.ReadUInt32LittleEndian(sym);
                var str = span[(int)(stroff + nameOff)..];
                int len = str.IndexOf((byte)0);
                names.Add(Encoding.UTF8.GetString(str[..len]));
            }
        }
        return names;
    }
}
