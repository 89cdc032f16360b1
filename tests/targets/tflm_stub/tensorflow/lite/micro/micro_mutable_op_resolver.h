// A stand-in for TFLite Micro's tensorflow/lite/micro/micro_mutable_op_resolver.h, for compiling
// edgekit's generated headers where TFLite Micro's own headers are not at hand (its wheel ships
// none, and no Debian package has them). It declares the same Add methods (their names as in
// TFLite Micro's header of 2026-08) and does what the real resolver does with them at run time:
// an Add past the template's N fails, and so does a second Add of the same operator. A generated
// header that calls a method TFLite Micro lacks does not compile against it.
#ifndef EDGEKIT_TEST_TFLM_STUB_H_
#define EDGEKIT_TEST_TFLM_STUB_H_

#include <cstring>

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;

namespace tflite {

template <unsigned int tOpCount>
class MicroMutableOpResolver {
 public:
  MicroMutableOpResolver(const MicroMutableOpResolver&) = delete;
  MicroMutableOpResolver& operator=(const MicroMutableOpResolver&) = delete;
  MicroMutableOpResolver() {}

  unsigned int registered() const { return count_; }
  const char* name(unsigned int i) const { return names_[i]; }

#define EDGEKIT_STUB_ADD(method) \
  TfLiteStatus method() { return Register(#method); }
  EDGEKIT_STUB_ADD(AddAbs)
  EDGEKIT_STUB_ADD(AddAdd)
  EDGEKIT_STUB_ADD(AddAddN)
  EDGEKIT_STUB_ADD(AddArgMax)
  EDGEKIT_STUB_ADD(AddArgMin)
  EDGEKIT_STUB_ADD(AddAssignVariable)
  EDGEKIT_STUB_ADD(AddAveragePool2D)
  EDGEKIT_STUB_ADD(AddBatchMatMul)
  EDGEKIT_STUB_ADD(AddBatchToSpaceNd)
  EDGEKIT_STUB_ADD(AddBroadcastArgs)
  EDGEKIT_STUB_ADD(AddBroadcastTo)
  EDGEKIT_STUB_ADD(AddCallOnce)
  EDGEKIT_STUB_ADD(AddCast)
  EDGEKIT_STUB_ADD(AddCeil)
  EDGEKIT_STUB_ADD(AddCircularBuffer)
  EDGEKIT_STUB_ADD(AddConcatenation)
  EDGEKIT_STUB_ADD(AddConv2D)
  EDGEKIT_STUB_ADD(AddCos)
  EDGEKIT_STUB_ADD(AddCumSum)
  EDGEKIT_STUB_ADD(AddDecode)
  EDGEKIT_STUB_ADD(AddDelay)
  EDGEKIT_STUB_ADD(AddDepthToSpace)
  EDGEKIT_STUB_ADD(AddDepthwiseConv2D)
  EDGEKIT_STUB_ADD(AddDequantize)
  EDGEKIT_STUB_ADD(AddDetectionPostprocess)
  EDGEKIT_STUB_ADD(AddDiv)
  EDGEKIT_STUB_ADD(AddDynamicUpdateSlice)
  EDGEKIT_STUB_ADD(AddElu)
  EDGEKIT_STUB_ADD(AddEmbeddingLookup)
  EDGEKIT_STUB_ADD(AddEnergy)
  EDGEKIT_STUB_ADD(AddEqual)
  EDGEKIT_STUB_ADD(AddEthosU)
  EDGEKIT_STUB_ADD(AddExp)
  EDGEKIT_STUB_ADD(AddExpandDims)
  EDGEKIT_STUB_ADD(AddFftAutoScale)
  EDGEKIT_STUB_ADD(AddFill)
  EDGEKIT_STUB_ADD(AddFilterBank)
  EDGEKIT_STUB_ADD(AddFilterBankLog)
  EDGEKIT_STUB_ADD(AddFilterBankSpectralSubtraction)
  EDGEKIT_STUB_ADD(AddFilterBankSquareRoot)
  EDGEKIT_STUB_ADD(AddFloor)
  EDGEKIT_STUB_ADD(AddFloorDiv)
  EDGEKIT_STUB_ADD(AddFloorMod)
  EDGEKIT_STUB_ADD(AddFramer)
  EDGEKIT_STUB_ADD(AddFullyConnected)
  EDGEKIT_STUB_ADD(AddGather)
  EDGEKIT_STUB_ADD(AddGatherNd)
  EDGEKIT_STUB_ADD(AddGreater)
  EDGEKIT_STUB_ADD(AddGreaterEqual)
  EDGEKIT_STUB_ADD(AddHardSwish)
  EDGEKIT_STUB_ADD(AddIf)
  EDGEKIT_STUB_ADD(AddIrfft)
  EDGEKIT_STUB_ADD(AddL2Normalization)
  EDGEKIT_STUB_ADD(AddL2Pool2D)
  EDGEKIT_STUB_ADD(AddLeakyRelu)
  EDGEKIT_STUB_ADD(AddLess)
  EDGEKIT_STUB_ADD(AddLessEqual)
  EDGEKIT_STUB_ADD(AddLog)
  EDGEKIT_STUB_ADD(AddLogSoftmax)
  EDGEKIT_STUB_ADD(AddLogicalAnd)
  EDGEKIT_STUB_ADD(AddLogicalNot)
  EDGEKIT_STUB_ADD(AddLogicalOr)
  EDGEKIT_STUB_ADD(AddLogistic)
  EDGEKIT_STUB_ADD(AddMaxPool2D)
  EDGEKIT_STUB_ADD(AddMaximum)
  EDGEKIT_STUB_ADD(AddMean)
  EDGEKIT_STUB_ADD(AddMinimum)
  EDGEKIT_STUB_ADD(AddMirrorPad)
  EDGEKIT_STUB_ADD(AddMul)
  EDGEKIT_STUB_ADD(AddNeg)
  EDGEKIT_STUB_ADD(AddNotEqual)
  EDGEKIT_STUB_ADD(AddOverlapAdd)
  EDGEKIT_STUB_ADD(AddPCAN)
  EDGEKIT_STUB_ADD(AddPack)
  EDGEKIT_STUB_ADD(AddPad)
  EDGEKIT_STUB_ADD(AddPadV2)
  EDGEKIT_STUB_ADD(AddPrelu)
  EDGEKIT_STUB_ADD(AddQuantize)
  EDGEKIT_STUB_ADD(AddReadVariable)
  EDGEKIT_STUB_ADD(AddReduceAll)
  EDGEKIT_STUB_ADD(AddReduceMax)
  EDGEKIT_STUB_ADD(AddReduceMin)
  EDGEKIT_STUB_ADD(AddRelu)
  EDGEKIT_STUB_ADD(AddRelu6)
  EDGEKIT_STUB_ADD(AddReshape)
  EDGEKIT_STUB_ADD(AddResizeBilinear)
  EDGEKIT_STUB_ADD(AddResizeNearestNeighbor)
  EDGEKIT_STUB_ADD(AddReverseV2)
  EDGEKIT_STUB_ADD(AddRfft)
  EDGEKIT_STUB_ADD(AddRound)
  EDGEKIT_STUB_ADD(AddRsqrt)
  EDGEKIT_STUB_ADD(AddSelectV2)
  EDGEKIT_STUB_ADD(AddShape)
  EDGEKIT_STUB_ADD(AddSin)
  EDGEKIT_STUB_ADD(AddSlice)
  EDGEKIT_STUB_ADD(AddSoftmax)
  EDGEKIT_STUB_ADD(AddSpaceToBatchNd)
  EDGEKIT_STUB_ADD(AddSpaceToDepth)
  EDGEKIT_STUB_ADD(AddSplit)
  EDGEKIT_STUB_ADD(AddSplitV)
  EDGEKIT_STUB_ADD(AddSqrt)
  EDGEKIT_STUB_ADD(AddSquare)
  EDGEKIT_STUB_ADD(AddSquaredDifference)
  EDGEKIT_STUB_ADD(AddSqueeze)
  EDGEKIT_STUB_ADD(AddStacker)
  EDGEKIT_STUB_ADD(AddStridedSlice)
  EDGEKIT_STUB_ADD(AddSub)
  EDGEKIT_STUB_ADD(AddSum)
  EDGEKIT_STUB_ADD(AddSvdf)
  EDGEKIT_STUB_ADD(AddTanh)
  EDGEKIT_STUB_ADD(AddTranspose)
  EDGEKIT_STUB_ADD(AddTransposeConv)
  EDGEKIT_STUB_ADD(AddUnidirectionalSequenceLSTM)
  EDGEKIT_STUB_ADD(AddUnpack)
  EDGEKIT_STUB_ADD(AddVarHandle)
  EDGEKIT_STUB_ADD(AddWhile)
  EDGEKIT_STUB_ADD(AddWindow)
  EDGEKIT_STUB_ADD(AddZerosLike)
#undef EDGEKIT_STUB_ADD

 private:
  TfLiteStatus Register(const char* method) {
    if (count_ >= tOpCount) return kTfLiteError;  // the resolver is too small
    for (unsigned int i = 0; i < count_; ++i) {
      if (std::strcmp(names_[i], method) == 0) return kTfLiteError;  // registered twice
    }
    names_[count_++] = method;
    return kTfLiteOk;
  }

  const char* names_[tOpCount > 0 ? tOpCount : 1] = {};
  unsigned int count_ = 0;
};

}  // namespace tflite

#endif  // EDGEKIT_TEST_TFLM_STUB_H_
