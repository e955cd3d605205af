/**
 * PTP datasets (DeviceInfo, StorageIDs, StorageInfo, ObjectInfo, object handle arrays): decode for the
 * initiator, encode for the simulator and for round-trip tests. Pure.
 */
import { PtpReader, PtpWriter, protocolError } from './codec.js';

export interface DeviceInfo {
  standardVersion: number;
  vendorExtensionId: number;
  vendorExtensionVersion: number;
  vendorExtensionDesc: string;
  functionalMode: number;
  operationsSupported: number[];
  eventsSupported: number[];
  devicePropertiesSupported: number[];
  captureFormats: number[];
  imageFormats: number[];
  manufacturer: string;
  model: string;
  deviceVersion: string;
  serialNumber: string;
}

export function decodeDeviceInfo(bytes: Uint8Array): DeviceInfo {
  const r = new PtpReader(bytes, 'DeviceInfo');
  const info: DeviceInfo = {
    standardVersion: r.u16('StandardVersion'),
    vendorExtensionId: r.u32('VendorExtensionID'),
    vendorExtensionVersion: r.u16('VendorExtensionVersion'),
    vendorExtensionDesc: r.string('VendorExtensionDesc'),
    functionalMode: r.u16('FunctionalMode'),
    operationsSupported: r.u16Array('OperationsSupported'),
    eventsSupported: r.u16Array('EventsSupported'),
    devicePropertiesSupported: r.u16Array('DevicePropertiesSupported'),
    captureFormats: r.u16Array('CaptureFormats'),
    imageFormats: r.u16Array('ImageFormats'),
    manufacturer: '',
    model: '',
    deviceVersion: '',
    serialNumber: '',
  };
  // The trailing strings are optional in practice (libgphoto2 accepts DeviceInfo that stops after Manufacturer).
  if (r.remaining > 0) info.manufacturer = r.string('Manufacturer');
  if (r.remaining > 0) info.model = r.string('Model');
  if (r.remaining > 0) info.deviceVersion = r.string('DeviceVersion');
  if (r.remaining > 0) info.serialNumber = r.string('SerialNumber');
  return info;
}

export function encodeDeviceInfo(info: DeviceInfo): Buffer {
  return new PtpWriter()
    .u16(info.standardVersion)
    .u32(info.vendorExtensionId)
    .u16(info.vendorExtensionVersion)
    .string(info.vendorExtensionDesc)
    .u16(info.functionalMode)
    .u16Array(info.operationsSupported)
    .u16Array(info.eventsSupported)
    .u16Array(info.devicePropertiesSupported)
    .u16Array(info.captureFormats)
    .u16Array(info.imageFormats)
    .string(info.manufacturer)
    .string(info.model)
    .string(info.deviceVersion)
    .string(info.serialNumber)
    .toBuffer();
}

/** A u32 array dataset (StorageIDs, ObjectHandles). */
export function decodeU32Array(bytes: Uint8Array, what: string): number[] {
  if (bytes.byteLength === 0) return [];
  const r = new PtpReader(bytes, what);
  const items = r.u32Array(what);
  if (r.remaining !== 0) {
    throw protocolError(what, `${r.remaining} bytes left after the array`, { offset: r.offset, expected: 'end of dataset', available: r.remaining });
  }
  return items;
}

export function encodeU32Array(items: readonly number[]): Buffer {
  return new PtpWriter(4 + 4 * items.length).u32Array(items).toBuffer();
}

/** StorageIDs as the device reports them; see `availableStorageIds` for the ones that can be used. */
export function decodeStorageIds(bytes: Uint8Array): number[] {
  return decodeU32Array(bytes, 'StorageIDs');
}

/** A storage id whose low 16 bits are 0 names a slot without media (PTP: "storage not available"). */
export function isStorageAvailable(storageId: number): boolean {
  return (storageId & 0xffff) !== 0;
}

export interface StorageInfo {
  storageType: number;
  filesystemType: number;
  accessCapability: number;
  maxCapacity: bigint;
  freeSpaceInBytes: bigint;
  freeSpaceInImages: number;
  storageDescription: string;
  volumeLabel: string;
}

export function decodeStorageInfo(bytes: Uint8Array): StorageInfo {
  const r = new PtpReader(bytes, 'StorageInfo');
  return {
    storageType: r.u16('StorageType'),
    filesystemType: r.u16('FilesystemType'),
    accessCapability: r.u16('AccessCapability'),
    maxCapacity: r.u64('MaxCapacity'),
    freeSpaceInBytes: r.u64('FreeSpaceInBytes'),
    freeSpaceInImages: r.u32('FreeSpaceInImages'),
    storageDescription: r.string('StorageDescription'),
    volumeLabel: r.remaining > 0 ? r.string('VolumeLabel') : '',
  };
}

export function encodeStorageInfo(si: StorageInfo): Buffer {
  return new PtpWriter()
    .u16(si.storageType)
    .u16(si.filesystemType)
    .u16(si.accessCapability)
    .u64(si.maxCapacity)
    .u64(si.freeSpaceInBytes)
    .u32(si.freeSpaceInImages)
    .string(si.storageDescription)
    .string(si.volumeLabel)
    .toBuffer();
}

export interface ObjectInfo {
  storageId: number;
  objectFormat: number;
  protectionStatus: number;
  /** u32 on the wire; 0xFFFFFFFF means "4 GiB or more" on MTP devices. */
  compressedSize: number;
  thumbFormat: number;
  thumbCompressedSize: number;
  thumbPixWidth: number;
  thumbPixHeight: number;
  imagePixWidth: number;
  imagePixHeight: number;
  imageBitDepth: number;
  parentObject: number;
  associationType: number;
  associationDesc: number;
  sequenceNumber: number;
  filename: string;
  /** Raw PTP date strings (parse with parsePtpDate: a camera's clock zone is policy, not wire format). */
  captureDate: string;
  modificationDate: string;
  keywords: string;
}

export interface ObjectInfoDecodeOptions {
  /**
   * Some Samsung devices write CompressedSize as u64. libgphoto2 detects it when the byte where the
   * filename length should be is 0 and the one 4 bytes later is not; enable that heuristic per device.
   */
  detectObjectSize64?: boolean;
}

export function decodeObjectInfo(bytes: Uint8Array, opts: ObjectInfoDecodeOptions = {}): ObjectInfo {
  const r = new PtpReader(bytes, 'ObjectInfo');
  const storageId = r.u32('StorageID');
  const objectFormat = r.u16('ObjectFormat');
  const protectionStatus = r.u16('ProtectionStatus');
  let compressedSize: number;
  if (opts.detectObjectSize64 === true && bytes.byteLength > 57 && bytes[52] === 0 && bytes[56] !== 0) {
    compressedSize = Number(r.u64('ObjectCompressedSize (64-bit)'));
  } else {
    compressedSize = r.u32('ObjectCompressedSize');
  }
  const info: ObjectInfo = {
    storageId,
    objectFormat,
    protectionStatus,
    compressedSize,
    thumbFormat: r.u16('ThumbFormat'),
    thumbCompressedSize: r.u32('ThumbCompressedSize'),
    thumbPixWidth: r.u32('ThumbPixWidth'),
    thumbPixHeight: r.u32('ThumbPixHeight'),
    imagePixWidth: r.u32('ImagePixWidth'),
    imagePixHeight: r.u32('ImagePixHeight'),
    imageBitDepth: r.u32('ImageBitDepth'),
    parentObject: r.u32('ParentObject'),
    associationType: r.u16('AssociationType'),
    associationDesc: r.u32('AssociationDesc'),
    sequenceNumber: r.u32('SequenceNumber'),
    filename: r.string('Filename'),
    captureDate: '',
    modificationDate: '',
    keywords: '',
  };
  // Dates and keywords are often missing on simple devices; a present but malformed string is still an error.
  if (r.remaining > 0) info.captureDate = r.string('CaptureDate');
  if (r.remaining > 0) info.modificationDate = r.string('ModificationDate');
  if (r.remaining > 0) info.keywords = r.string('Keywords');
  return info;
}

export function encodeObjectInfo(oi: ObjectInfo): Buffer {
  return new PtpWriter()
    .u32(oi.storageId)
    .u16(oi.objectFormat)
    .u16(oi.protectionStatus)
    .u32(oi.compressedSize)
    .u16(oi.thumbFormat)
    .u32(oi.thumbCompressedSize)
    .u32(oi.thumbPixWidth)
    .u32(oi.thumbPixHeight)
    .u32(oi.imagePixWidth)
    .u32(oi.imagePixHeight)
    .u32(oi.imageBitDepth)
    .u32(oi.parentObject)
    .u16(oi.associationType)
    .u32(oi.associationDesc)
    .u32(oi.sequenceNumber)
    .string(oi.filename)
    .string(oi.captureDate)
    .string(oi.modificationDate)
    .string(oi.keywords)
    .toBuffer();
}
