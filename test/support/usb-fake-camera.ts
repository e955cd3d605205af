/**
 * A camera on the scripted USB link (test/usb-fake-link.ts) that serves a list of files as one storage,
 * for tests that run the whole camera source (session, listing walk, downloads) without QEMU. It answers
 * the operations a PTP camera source uses and nothing else.
 */
import { formatPtpDate } from '../../src/device/ptp/codec.js';
import {
  AccessCapability,
  AssociationType,
  FilesystemType,
  ObjectFormat,
  OperationCode,
  ProtectionStatus,
  ROOT_OBJECTS,
  ResponseCode,
  StorageType,
} from '../../src/device/ptp/codes.js';
import { encodeDeviceInfo, encodeObjectInfo, encodeStorageInfo, encodeU32Array, type DeviceInfo } from '../../src/device/ptp/datasets.js';
import type { CommandHandler } from '../usb-fake-link.js';

export const FAKE_STORAGE_ID = 0x00010001;

export interface FakeCameraFile {
  /** '/'-separated path on the storage; its folders become associations. */
  path: string;
  content: Buffer;
  mtimeMs: number;
}

export interface FakeCameraOptions {
  manufacturer?: string;
  model?: string;
  serialNumber: string;
  storageDescription?: string;
}

interface FakeObject {
  handle: number;
  parent: number;
  name: string;
  /** Undefined for a folder. */
  file?: FakeCameraFile;
}

/** Handles numbered in path order from 1; folders appear once, before what they hold. */
function objectsOf(files: readonly FakeCameraFile[]): FakeObject[] {
  const objects: FakeObject[] = [];
  const folders = new Map<string, number>();
  for (const file of [...files].sort((a, b) => (a.path < b.path ? -1 : 1))) {
    const parts = file.path.split('/');
    let parent = 0;
    for (let i = 0; i < parts.length - 1; i++) {
      const key = parts.slice(0, i + 1).join('/');
      let handle = folders.get(key);
      if (handle === undefined) {
        handle = objects.length + 1;
        objects.push({ handle, parent, name: parts[i]! });
        folders.set(key, handle);
      }
      parent = handle;
    }
    objects.push({ handle: objects.length + 1, parent, name: parts[parts.length - 1]!, file });
  }
  return objects;
}

export function fakeCameraHandler(files: readonly FakeCameraFile[], opts: FakeCameraOptions): CommandHandler {
  const objects = objectsOf(files);
  const byHandle = new Map(objects.map((o) => [o.handle, o]));
  const deviceInfo: DeviceInfo = {
    standardVersion: 100,
    vendorExtensionId: 0,
    vendorExtensionVersion: 0,
    vendorExtensionDesc: '',
    functionalMode: 0,
    operationsSupported: [
      OperationCode.GetDeviceInfo,
      OperationCode.OpenSession,
      OperationCode.CloseSession,
      OperationCode.GetStorageIDs,
      OperationCode.GetStorageInfo,
      OperationCode.GetObjectHandles,
      OperationCode.GetObjectInfo,
      OperationCode.GetObject,
      OperationCode.GetPartialObject,
    ],
    eventsSupported: [],
    devicePropertiesSupported: [],
    captureFormats: [],
    imageFormats: [ObjectFormat.Undefined, ObjectFormat.Association],
    manufacturer: opts.manufacturer ?? 'Fake',
    model: opts.model ?? 'USB Camera',
    deviceVersion: '1.0',
    serialNumber: opts.serialNumber,
  };
  return (cmd, dev) => {
    const tid = cmd.transactionId;
    const [p1 = 0, p2 = 0, p3 = 0] = cmd.params;
    const reply = (data: Buffer): void => {
      dev.sendData(tid, cmd.code, data);
      dev.respond(tid);
    };
    const object = byHandle.get(p1);
    switch (cmd.code) {
      case OperationCode.OpenSession:
      case OperationCode.CloseSession:
        return dev.respond(tid);
      case OperationCode.GetDeviceInfo:
        return reply(encodeDeviceInfo(deviceInfo));
      case OperationCode.GetStorageIDs:
        return reply(encodeU32Array([FAKE_STORAGE_ID]));
      case OperationCode.GetStorageInfo:
        return reply(
          encodeStorageInfo({
            storageType: StorageType.RemovableRAM,
            filesystemType: FilesystemType.GenericHierarchical,
            accessCapability: AccessCapability.ReadOnlyWithDeletion,
            maxCapacity: 1n << 34n,
            freeSpaceInBytes: 1n << 33n,
            freeSpaceInImages: 1000,
            storageDescription: opts.storageDescription ?? 'SD',
            volumeLabel: '',
          }),
        );
      case OperationCode.GetObjectHandles: {
        const parent = p3 === ROOT_OBJECTS ? 0 : p3;
        const handles = objects.filter((o) => p3 === 0 || o.parent === parent).map((o) => o.handle);
        return reply(encodeU32Array(handles));
      }
      case OperationCode.GetObjectInfo: {
        if (object === undefined) return dev.respond(tid, ResponseCode.InvalidObjectHandle);
        const date = object.file ? formatPtpDate(object.file.mtimeMs, { timeZone: 'UTC', zoneMarker: 'Z', tenths: true }) : '';
        return reply(
          encodeObjectInfo({
            storageId: FAKE_STORAGE_ID,
            objectFormat: object.file ? ObjectFormat.Undefined : ObjectFormat.Association,
            protectionStatus: ProtectionStatus.ReadOnly,
            compressedSize: object.file?.content.length ?? 0,
            thumbFormat: 0,
            thumbCompressedSize: 0,
            thumbPixWidth: 0,
            thumbPixHeight: 0,
            imagePixWidth: 0,
            imagePixHeight: 0,
            imageBitDepth: 0,
            parentObject: object.parent,
            associationType: object.file ? AssociationType.Undefined : AssociationType.GenericFolder,
            associationDesc: 0,
            sequenceNumber: 0,
            filename: object.name,
            captureDate: date,
            modificationDate: date,
            keywords: '',
          }),
        );
      }
      case OperationCode.GetObject:
        if (object?.file === undefined) return dev.respond(tid, ResponseCode.InvalidObjectHandle);
        return reply(object.file.content);
      case OperationCode.GetPartialObject: {
        if (object?.file === undefined) return dev.respond(tid, ResponseCode.InvalidObjectHandle);
        const part = object.file.content.subarray(p2, p2 + p3);
        dev.sendData(tid, cmd.code, part);
        return dev.respond(tid, ResponseCode.OK, [part.length]);
      }
      default:
        return dev.respond(tid, ResponseCode.OperationNotSupported);
    }
  };
}
