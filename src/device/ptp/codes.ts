/**
 * PTP (ISO 15740) code points Shuttle uses or names in its logs and errors. Vendor codes appear only where
 * the camera layer relies on them; everything else is reported by its hex value.
 */

export const OperationCode = {
  GetDeviceInfo: 0x1001,
  OpenSession: 0x1002,
  CloseSession: 0x1003,
  GetStorageIDs: 0x1004,
  GetStorageInfo: 0x1005,
  GetNumObjects: 0x1006,
  GetObjectHandles: 0x1007,
  GetObjectInfo: 0x1008,
  GetObject: 0x1009,
  GetThumb: 0x100a,
  DeleteObject: 0x100b,
  SendObjectInfo: 0x100c,
  SendObject: 0x100d,
  InitiateCapture: 0x100e,
  FormatStore: 0x100f,
  ResetDevice: 0x1010,
  SelfTest: 0x1011,
  SetObjectProtection: 0x1012,
  PowerDown: 0x1013,
  GetDevicePropDesc: 0x1014,
  GetDevicePropValue: 0x1015,
  SetDevicePropValue: 0x1016,
  ResetDevicePropValue: 0x1017,
  TerminateOpenCapture: 0x1018,
  MoveObject: 0x1019,
  CopyObject: 0x101a,
  GetPartialObject: 0x101b,
  InitiateOpenCapture: 0x101c,
  /** Android MTP extension: (handle, offset low, offset high, max bytes). */
  AndroidGetPartialObject64: 0x95c1,
  NikonGetPartialObjectEx: 0x9431,
  NikonGetEvent: 0x90c7,
  CanonEosGetEvent: 0x9116,
} as const;

export const ResponseCode = {
  Undefined: 0x2000,
  OK: 0x2001,
  GeneralError: 0x2002,
  SessionNotOpen: 0x2003,
  InvalidTransactionID: 0x2004,
  OperationNotSupported: 0x2005,
  ParameterNotSupported: 0x2006,
  IncompleteTransfer: 0x2007,
  InvalidStorageID: 0x2008,
  InvalidObjectHandle: 0x2009,
  DevicePropNotSupported: 0x200a,
  InvalidObjectFormatCode: 0x200b,
  StoreFull: 0x200c,
  ObjectWriteProtected: 0x200d,
  StoreReadOnly: 0x200e,
  AccessDenied: 0x200f,
  NoThumbnailPresent: 0x2010,
  SelfTestFailed: 0x2011,
  PartialDeletion: 0x2012,
  StoreNotAvailable: 0x2013,
  SpecificationByFormatUnsupported: 0x2014,
  NoValidObjectInfo: 0x2015,
  InvalidCodeFormat: 0x2016,
  UnknownVendorCode: 0x2017,
  CaptureAlreadyTerminated: 0x2018,
  DeviceBusy: 0x2019,
  InvalidParentObject: 0x201a,
  InvalidDevicePropFormat: 0x201b,
  InvalidDevicePropValue: 0x201c,
  InvalidParameter: 0x201d,
  SessionAlreadyOpen: 0x201e,
  TransactionCancelled: 0x201f,
  SpecificationOfDestinationUnsupported: 0x2020,
} as const;

export const EventCode = {
  Undefined: 0x4000,
  CancelTransaction: 0x4001,
  ObjectAdded: 0x4002,
  ObjectRemoved: 0x4003,
  StoreAdded: 0x4004,
  StoreRemoved: 0x4005,
  DevicePropChanged: 0x4006,
  ObjectInfoChanged: 0x4007,
  DeviceInfoChanged: 0x4008,
  RequestObjectTransfer: 0x4009,
  StoreFull: 0x400a,
  DeviceReset: 0x400b,
  StorageInfoChanged: 0x400c,
  CaptureComplete: 0x400d,
  UnreportedStatus: 0x400e,
} as const;

export const ObjectFormat = {
  Undefined: 0x3000,
  Association: 0x3001,
  Script: 0x3002,
  Executable: 0x3003,
  Text: 0x3004,
  HTML: 0x3005,
  DPOF: 0x3006,
  AIFF: 0x3007,
  WAV: 0x3008,
  MP3: 0x3009,
  AVI: 0x300a,
  MPEG: 0x300b,
  ASF: 0x300c,
  QuickTime: 0x300d,
  UndefinedImage: 0x3800,
  ExifJpeg: 0x3801,
  TiffEp: 0x3802,
  FlashPix: 0x3803,
  BMP: 0x3804,
  CIFF: 0x3805,
  GIF: 0x3807,
  JFIF: 0x3808,
  PCD: 0x3809,
  PICT: 0x380a,
  PNG: 0x380b,
  TIFF: 0x380d,
  TiffIt: 0x380e,
  JP2: 0x380f,
  JPX: 0x3810,
  DNG: 0x3811,
  /** MTP: MPEG-4 container (.mp4), used by cameras for video. */
  MtpMp4: 0xb982,
} as const;

export const AssociationType = { Undefined: 0x0000, GenericFolder: 0x0001 } as const;

export const StorageType = { Undefined: 0, FixedROM: 1, RemovableROM: 2, FixedRAM: 3, RemovableRAM: 4 } as const;
export const FilesystemType = { Undefined: 0, GenericFlat: 1, GenericHierarchical: 2, DCF: 3 } as const;
export const AccessCapability = { ReadWrite: 0, ReadOnlyWithoutDeletion: 1, ReadOnlyWithDeletion: 2 } as const;
export const ProtectionStatus = { None: 0x0000, ReadOnly: 0x0001 } as const;

export const VendorExtension = { None: 0x00000000, Microsoft: 0x00000006, Nikon: 0x0000000a, Canon: 0x0000000b, Fuji: 0x0000000e, Sony: 0x00000011 } as const;

/** GetObjectHandles / GetStorageIDs wildcards. */
export const ALL_STORAGES = 0xffffffff;
/** As the association parameter of GetObjectHandles: objects at the root of the storage only. */
export const ROOT_OBJECTS = 0xffffffff;

function invert(table: Readonly<Record<string, number>>): Map<number, string> {
  return new Map(Object.entries(table).map(([name, code]) => [code, name]));
}

const operationNames = invert(OperationCode);
const responseNames = invert(ResponseCode);

export function hex16(code: number): string {
  return `0x${code.toString(16).padStart(4, '0')}`;
}

export function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}

export function operationName(code: number): string {
  return operationNames.get(code) ?? `Operation_${hex16(code)}`;
}

export function responseName(code: number): string {
  return responseNames.get(code) ?? `Response_${hex16(code)}`;
}
