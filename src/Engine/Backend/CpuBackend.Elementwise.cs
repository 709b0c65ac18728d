using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace Engine.Backend;

// Elementwise kernels: broadcasting binary ops, activations, dropout.
public sealed partial class CpuBackend
{
    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y)
    {
        if (IsF64(a)) Binary<double>(op, a, b, y); else Binary<float>(op, a, b, y);
    }

    public void BinaryBackward(BinaryOp op, Tensor a, Tensor b, Tensor dy, Tensor? da, Tensor? db)
    {
        if (IsF64(a)) BinaryBackward<double>(op, a, b, dy, da, db); else BinaryBackward<float>(op, a, b, dy, da, db);
    }

    /// <summary>Walks the output in rows of its last dim; for each row, the offsets of the
    /// matching a and b elements and their strides along the last dim (0 where broadcast).</summary>
    private readonly record struct BroadcastRows(long Rows, int Last, long[] Sa, long[] Sb, int[] OutShape)
    {
        public static BroadcastRows Of(Tensor a, Tensor b, Tensor y)
        {
            var shape = y.ShapeArray;
            int last = shape.Length == 0 ? 1 : shape[^1];
            return new(last == 0 ? 0 : y.Numel / last, last, Shape.BroadcastStrides(a.Shape, shape), Shape.BroadcastStrides(b.Shape, shape), shape);
        }

        public long LastStrideA => Sa.Length == 0 ? 0 : Sa[^1];
        public long LastStrideB => Sb.Length == 0 ? 0 : Sb[^1];

        public (long A, long B) RowOffsets(long row)
        {
            long oa = 0, ob = 0;
            for (int d = OutShape.Length - 2; d >= 0 && row > 0; d--)
            {
                long i = row % OutShape[d];
                row /= OutShape[d];
                oa += i * Sa[d];
                ob += i * Sb[d];
            }
            return (oa, ob);
        }
    }

    private static void Binary<T>(BinaryOp op, Tensor ta, Tensor tb, Tensor ty) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var br = BroadcastRows.Of(ta, tb, ty);
        int n = br.Last;
        long la = br.LastStrideA, lb = br.LastStrideB;
        For(br.Rows, n, row =>
        {
            var a = S<T>(ta); var b = S<T>(tb);
            var y = S<T>(ty).Slice((int)(row * n), n);
            var (oa, ob) = br.RowOffsets(row);
            if (la == 1 && lb == 1) Vec(op, a.Slice((int)oa, n), b.Slice((int)ob, n), y);
            else if (la == 1 && lb == 0) VecScalar(op, a.Slice((int)oa, n), b[(int)ob], y);
            else
            {
                for (int j = 0; j < n; j++) y[j] = Apply(op, a[(int)(oa + j * la)], b[(int)(ob + j * lb)]);
            }
        });
    }

    private static void Vec<T>(BinaryOp op, ReadOnlySpan<T> a, ReadOnlySpan<T> b, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (op)
        {
            case BinaryOp.Add: TensorPrimitives.Add(a, b, y); break;
            case BinaryOp.Sub: TensorPrimitives.Subtract(a, b, y); break;
            case BinaryOp.Mul: TensorPrimitives.Multiply(a, b, y); break;
            default: TensorPrimitives.Divide(a, b, y); break;
        }
    }

    private static void VecScalar<T>(BinaryOp op, ReadOnlySpan<T> a, T b, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (op)
        {
            case BinaryOp.Add: TensorPrimitives.Add(a, b, y); break;
            case BinaryOp.Sub: TensorPrimitives.Subtract(a, b, y); break;
            case BinaryOp.Mul: TensorPrimitives.Multiply(a, b, y); break;
            default: TensorPrimitives.Divide(a, b, y); break;
        }
    }

    private static T Apply<T>(BinaryOp op, T a, T b) where T : IFloatingPointIeee754<T> => op switch
    {
        BinaryOp.Add => a + b,
        BinaryOp.Sub => a - b,
        BinaryOp.Mul => a * b,
        _ => a / b,
    };

    private static void BinaryBackward<T>(BinaryOp op, Tensor ta, Tensor tb, Tensor tdy, Tensor? tda, Tensor? tdb)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var br = BroadcastRows.Of(ta, tb, tdy);
        int n = br.Last;
        long la = br.LastStrideA, lb = br.LastStrideB;
        // Rows of a broadcast operand receive from several output rows: accumulate serially then.
        bool serial = (tda is not null && ta.Numel != tdy.Numel) || (tdb is not null && tb.Numel != tdy.Numel);
        void Row(int row)
        {
            var a = S<T>(ta); var b = S<T>(tb); var dy = S<T>(tdy).Slice(row * n, n);
            var da = S<T>(tda, true); var db = S<T>(tdb, true);
            var (oa, ob) = br.RowOffsets(row);
            for (int j = 0; j < n; j++)
            {
                int ia = (int)(oa + j * la), ib = (int)(ob + j * lb);
                T g = dy[j];
                switch (op)
                {
                    case BinaryOp.Add:
                        if (tda is not null) da[ia] += g;
                        if (tdb is not null) db[ib] += g;
                        break;
                    case BinaryOp.Sub:
                        if (tda is not null) da[ia] += g;
                        if (tdb is not null) db[ib] -= g;
                        break;
                    case BinaryOp.Mul:
                        if (tda is not null) da[ia] += g * b[ib];
                        if (tdb is not null) db[ib] += g * a[ia];
                        break;
                    default:
                        if (tda is not null) da[ia] += g / b[ib];
                        if (tdb is not null) db[ib] -= g * a[ia] / (b[ib] * b[ib]);
                        break;
                }
            }
        }
        if (serial) for (int r = 0; r < br.Rows; r++) Row(r);
        else For(br.Rows, n, Row);
    }

    // ------------------------------------------------------------- activations

    public void Unary(UnaryOp op, Tensor x, Tensor y)
    {
        if (IsF64(x)) Unary<double>(op, S<double>(x), S<double>(y)); else Unary<float>(op, S<float>(x), S<float>(y));
    }

    public void UnaryBackward(UnaryOp op, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        if (IsF64(x)) UnaryBackward<double>(op, S<double>(x), S<double>(y), S<double>(dy), S<double>(dx));
        else UnaryBackward<float>(op, S<float>(x), S<float>(y), S<float>(dy), S<float>(dx));
    }

    private const double SqrtTwoOverPi = 0.7978845608028654, GeluCoef = 0.044715, InvSqrt2 = 0.7071067811865476, InvSqrt2Pi = 0.3989422804014327;

    private static void Unary<T>(UnaryOp op, Span<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        switch (op)
        {
            case UnaryOp.Relu: TensorPrimitives.Max(x, T.Zero, y); return;
            case UnaryOp.Tanh: TensorPrimitives.Tanh(x, y); return;
        }
        if (typeof(T) == typeof(float) && op == UnaryOp.GeluErf)
        {
            GeluF32(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(x), System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(y), default, false);
            return;
        }
        for (int i = 0; i < x.Length; i++)
        {
            double v = double.CreateTruncating(x[i]);
            double r = op switch
            {
                UnaryOp.Silu => v / (1 + Math.Exp(-v)),
                UnaryOp.GeluErf => 0.5 * v * (1 + SpecialFunctions.Erf(v * InvSqrt2)),
                _ => 0.5 * v * (1 + Math.Tanh(SqrtTwoOverPi * (v + GeluCoef * v * v * v))),
            };
            y[i] = T.CreateTruncating(r);
        }
    }

    private static void UnaryBackward<T>(UnaryOp op, Span<T> x, Span<T> y, Span<T> dy, Span<T> dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float) && op == UnaryOp.GeluErf)
        {
            GeluF32(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(x), System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(dx),
                System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(dy), true);
            return;
        }
        for (int i = 0; i < x.Length; i++)
        {
            double v = double.CreateTruncating(x[i]);
            double d = op switch
            {
                UnaryOp.Relu => v > 0 ? 1 : 0,
                UnaryOp.Tanh => 1 - double.CreateTruncating(y[i] * y[i]),
                UnaryOp.Silu => Silu1(v),
                UnaryOp.GeluErf => 0.5 * (1 + Erf<T>(v * InvSqrt2)) + v * InvSqrt2Pi * Math.Exp(-0.5 * v * v),
                _ => GeluTanh1(v),
            };
            dx[i] += dy[i] * T.CreateTruncating(d);
        }
    }

    /// <summary>
    /// The float32 GELU (erf form), 8 lanes at a time: erf by Abramowitz and Stegun 7.1.26 (as
    /// <see cref="SpecialFunctions.ErfSingle"/>, absolute error below 1.5e-7), exp by Vector256.Exp.
    /// Forward: y = ½x(1 + erf(x/√2)). Backward (<paramref name="backward"/>): dx += dy·(½(1 + erf(x/√2)) + x·φ(x)).
    /// </summary>
    private static void GeluF32(ReadOnlySpan<float> x, Span<float> outp, ReadOnlySpan<float> dy, bool backward)
    {
        var one = Vector256.Create(1f);
        var half = Vector256.Create(0.5f);
        var invSqrt2 = Vector256.Create((float)InvSqrt2);
        var invSqrt2Pi = Vector256.Create((float)InvSqrt2Pi);
        var p = Vector256.Create(0.3275911f);
        var a1 = Vector256.Create(0.254829592f); var a2 = Vector256.Create(-0.284496736f); var a3 = Vector256.Create(1.421413741f);
        var a4 = Vector256.Create(-1.453152027f); var a5 = Vector256.Create(1.061405429f);
        int i = 0;
        for (; i + 8 <= x.Length; i += 8)
        {
            var v = Vector256.Create(x.Slice(i, 8));
            var z = v * invSqrt2;
            var az = Vector256.Abs(z);
            var t = one / (one + p * az);
            var poly = t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5))));
            var r = one - poly * Vector256.Exp(-(az * az));
            var erf = Vector256.ConditionalSelect(Vector256.LessThan(z, Vector256<float>.Zero), -r, r);
            if (!backward)
            {
                (half * v * (one + erf)).CopyTo(outp.Slice(i, 8));
                continue;
            }
            var d = half * (one + erf) + v * invSqrt2Pi * Vector256.Exp(-(half * v * v));
            var acc = Vector256.Create(outp.Slice(i, 8)) + Vector256.Create(dy.Slice(i, 8)) * d;
            acc.CopyTo(outp.Slice(i, 8));
        }
        for (; i < x.Length; i++)
        {
            float v = x[i], erf = SpecialFunctions.ErfSingle(v * (float)InvSqrt2);
            if (!backward) outp[i] = 0.5f * v * (1f + erf);
            else outp[i] += dy[i] * (0.5f * (1f + erf) + v * (float)InvSqrt2Pi * MathF.Exp(-0.5f * v * v));
        }
    }

    /// <summary>float64 erf for double tensors, the single-precision one for float tensors.</summary>
    private static double Erf<T>(double v) => typeof(T) == typeof(float) ? SpecialFunctions.ErfSingle((float)v) : SpecialFunctions.Erf(v);

    private static double Silu1(double v)
    {
        double s = 1 / (1 + Math.Exp(-v));
        return s * (1 + v * (1 - s));
    }

    private static double GeluTanh1(double v)
    {
        double t = Math.Tanh(SqrtTwoOverPi * (v + GeluCoef * v * v * v));
        return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * SqrtTwoOverPi * (1 + 3 * GeluCoef * v * v);
    }

    // ------------------------------------------------------------- dropout

    public void Dropout(Tensor x, Tensor y, double p, ulong seed)
    {
        if (IsF64(x)) Dropout<double>(S<double>(x), S<double>(y), p, seed, accumulate: false);
        else Dropout<float>(S<float>(x), S<float>(y), p, seed, accumulate: false);
    }

    public void DropoutBackward(Tensor dy, Tensor dx, double p, ulong seed)
    {
        if (IsF64(dy)) Dropout<double>(S<double>(dy), S<double>(dx), p, seed, accumulate: true);
        else Dropout<float>(S<float>(dy), S<float>(dx), p, seed, accumulate: true);
    }

    /// <summary>The mask keeps element i when Rng.Uniform(seed, i) ≥ p; kept values are scaled by 1/(1−p).</summary>
    private static void Dropout<T>(Span<T> x, Span<T> y, double p, ulong seed, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T scale = T.CreateTruncating(1.0 / (1.0 - p));
        float pf = (float)p;
        for (int i = 0; i < x.Length; i++)
        {
            T v = Rng.Uniform(seed, (ulong)i) >= pf ? x[i] * scale : T.Zero;
            if (accumulate) y[i] += v; else y[i] = v;
        }
    }
}
